//! The Numenta Anomaly Benchmark scoring rules, re-implemented from NAB's `nab/sweeper.py`,
//! `nab/optimizer.py`, `nab/scorer.py` and `Runner.normalize` (NAB v1.1):
//!
//! * Probation: the first `min(floor(0.15 n), 0.15 * 5000)` rows of a file are not scored.
//! * Every row gets a *sweep score* as if it were a detection. Inside a window of width `w`
//!   (rows, inclusive) ending at row `r`, row `i` sits at `p = -(r - i + 1) / w` and earns
//!   `A_TP * S(p) / S(-1)` with `S(x) = 2 / (1 + e^{5x}) - 1` (so the first row of a window earns
//!   exactly `A_TP`). Outside windows a row costs `A_FP * S(p)` with `p = |r_prev - i| / (w_prev - 1)`
//!   measured from the end of the previous window (`S(x) = -1` for `x >= 3`, and before any
//!   window `p = 3`), so detections shortly after a window are forgiven.
//! * For a threshold `t`, the rows with `anomaly_score >= t` are detections: every window
//!   contributes the best (= earliest) sweep score of its detections, or `-A_FN` if it has none;
//!   false positives add their (negative) sweep scores.
//! * One threshold per profile is chosen over the whole corpus, among the distinct scores (plus
//!   1.1, "no detection"), to maximise the corpus score; ties go to the higher threshold.
//! * The corpus score is the sum of the per-file scores at that threshold, normalised as
//!   `100 (raw - null) / (perfect - null)` with `null` the null detector's corpus score and
//!   `perfect = A_TP * number of windows`.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::anomaly::AnomalyError;

/// Fraction of each file that is probationary (not scored).
pub const PROBATION_PERCENT: f64 = 0.15;

/// Threshold above every score: no detection at all.
pub const NO_DETECTION_THRESHOLD: f64 = 1.1;

/// The weights of one scoring profile (`profiles.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostMatrix {
    #[serde(rename = "tpWeight")]
    pub tp_weight: f64,
    #[serde(rename = "fpWeight")]
    pub fp_weight: f64,
    #[serde(rename = "fnWeight")]
    pub fn_weight: f64,
    #[serde(rename = "tnWeight", default = "one")]
    pub tn_weight: f64,
}

fn one() -> f64 {
    1.0
}

/// A named scoring profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub cost: CostMatrix,
}

/// NAB's profile names, in the order they are reported.
pub const PROFILE_NAMES: [&str; 3] = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];

/// The three official profiles (the weights of NAB's `config/profiles.json`).
pub fn official_profiles() -> Vec<Profile> {
    let mk = |name: &str, fp: f64, fn_: f64| Profile {
        name: name.to_string(),
        cost: CostMatrix {
            tp_weight: 1.0,
            fp_weight: fp,
            fn_weight: fn_,
            tn_weight: 1.0,
        },
    };
    vec![
        mk("standard", 0.11, 1.0),
        mk("reward_low_FP_rate", 0.22, 1.0),
        mk("reward_low_FN_rate", 0.11, 2.0),
    ]
}

/// Reads `profiles.json`; returns the three profiles in [`PROFILE_NAMES`] order.
pub fn load_profiles(path: &Path) -> Result<Vec<Profile>, AnomalyError> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "CostMatrix")]
        cost_matrix: CostMatrix,
    }
    let text = std::fs::read_to_string(path).map_err(|e| AnomalyError::io(path, e))?;
    let map: HashMap<String, Entry> =
        serde_json::from_str(&text).map_err(|source| AnomalyError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    PROFILE_NAMES
        .iter()
        .map(|name| {
            map.get(*name)
                .map(|e| Profile {
                    name: name.to_string(),
                    cost: e.cost_matrix,
                })
                .ok_or_else(|| {
                    AnomalyError::Corpus(format!("profile `{name}` missing in {}", path.display()))
                })
        })
        .collect()
}

/// `min(floor(p * n), p * 5000)`, NAB's probationary length in rows.
pub fn probationary_length(n_rows: usize) -> f64 {
    (PROBATION_PERCENT * n_rows as f64)
        .floor()
        .min(PROBATION_PERCENT * 5000.0)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// NAB's scaled sigmoid: `2 sigmoid(-5x) - 1`, and `-1` from `x >= 3` on.
pub fn scaled_sigmoid(relative_position: f64) -> f64 {
    if relative_position >= 3.0 {
        -1.0
    } else {
        2.0 * sigmoid(-5.0 * relative_position) - 1.0
    }
}

/// Where a row stands for scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// In the probationary period: never scored.
    Probationary,
    /// Outside every window.
    Outside,
    /// Inside the window with this (corpus-wide) id.
    Window(u32),
}

/// One row with its anomaly score and the sweep score it would earn as a detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepPoint {
    pub anomaly_score: f64,
    pub sweep_score: f64,
    pub kind: RowKind,
}

/// Score and confusion counts of one threshold (NAB's `ThresholdScore`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThresholdScore {
    pub threshold: f64,
    pub score: f64,
    pub tp: usize,
    pub tn: usize,
    pub fp: usize,
    pub fn_: usize,
    pub total: usize,
}

/// Sweep scores of one file (NAB's `Sweeper.calcSweepScore`). `windows` are inclusive row-index
/// ranges, sorted and disjoint; `first_window_id` numbers them corpus-wide.
pub fn calc_sweep_score(
    anomaly_scores: &[f64],
    windows: &[(usize, usize)],
    first_window_id: u32,
    cost: &CostMatrix,
) -> Vec<SweepPoint> {
    let max_tp = scaled_sigmoid(-1.0);
    let probation = probationary_length(anomaly_scores.len());
    let mut out = Vec::with_capacity(anomaly_scores.len());
    let mut next_window = 0usize;
    // (window id, right index, width)
    let mut cur: Option<(u32, usize, f64)> = None;
    let mut prev: Option<(usize, f64)> = None;
    for (i, &score) in anomaly_scores.iter().enumerate() {
        if next_window < windows.len() && i == windows[next_window].0 {
            let (left, right) = windows[next_window];
            cur = Some((
                first_window_id + next_window as u32,
                right,
                (right - left + 1) as f64,
            ));
            next_window += 1;
        }
        let (sweep, in_window) = match cur {
            Some((id, right, width)) => {
                let position = -((right as f64) - (i as f64) + 1.0) / width;
                (scaled_sigmoid(position) * cost.tp_weight / max_tp, Some(id))
            }
            None => {
                let position = match prev {
                    None => 3.0,
                    Some((prev_right, prev_width)) => {
                        (prev_right as f64 - i as f64).abs() / (prev_width - 1.0)
                    }
                };
                (scaled_sigmoid(position) * cost.fp_weight, None)
            }
        };
        let kind = if (i as f64) < probation {
            RowKind::Probationary
        } else {
            match in_window {
                Some(id) => RowKind::Window(id),
                None => RowKind::Outside,
            }
        };
        out.push(SweepPoint {
            anomaly_score: score,
            sweep_score: sweep,
            kind,
        });
        if let Some((_, right, width)) = cur {
            if i == right {
                prev = Some((right, width));
                cur = None;
            }
        }
    }
    out
}

/// Scores every threshold over a set of sweep points (NAB's `Sweeper.calcScoreByThreshold`):
/// the first row is the 1.1 "no detection" threshold, then one row per distinct anomaly score,
/// from the highest down, each counting the rows whose score is `>=` it.
pub fn score_by_threshold(points: &[SweepPoint], cost: &CostMatrix) -> Vec<ThresholdScore> {
    let fn_weight = cost.fn_weight;
    let mut scorable: Vec<&SweepPoint> = points
        .iter()
        .filter(|p| p.kind != RowKind::Probationary)
        .collect();
    // Stable sort, descending (Python's sorted(reverse=True) keeps ties in input order).
    scorable.sort_by(|a, b| b.anomaly_score.total_cmp(&a.anomaly_score));

    // Score parts in Python dict insertion order: "fp" first, then windows by first appearance.
    let mut slot_of: HashMap<u32, usize> = HashMap::new();
    let mut window_parts: Vec<f64> = Vec::new();
    for p in &scorable {
        if let RowKind::Window(id) = p.kind {
            slot_of.entry(id).or_insert_with(|| {
                window_parts.push(-fn_weight);
                window_parts.len() - 1
            });
        }
    }
    let mut fp_part = 0.0f64;
    let total_score = |fp_part: f64, parts: &[f64]| parts.iter().fold(fp_part, |acc, v| acc + v);

    let mut tn = scorable
        .iter()
        .filter(|p| p.kind == RowKind::Outside)
        .count();
    let mut fn_ = scorable.len() - tn;
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut cur_threshold = NO_DETECTION_THRESHOLD;
    let mut rows = Vec::new();
    for p in &scorable {
        if p.anomaly_score != cur_threshold {
            rows.push(ThresholdScore {
                threshold: cur_threshold,
                score: total_score(fp_part, &window_parts),
                tp,
                tn,
                fp,
                fn_,
                total: tp + tn + fp + fn_,
            });
            cur_threshold = p.anomaly_score;
        }
        match p.kind {
            RowKind::Window(id) => {
                tp += 1;
                fn_ -= 1;
                let slot = slot_of[&id];
                window_parts[slot] = window_parts[slot].max(p.sweep_score);
            }
            _ => {
                fp += 1;
                tn -= 1;
                fp_part += p.sweep_score;
            }
        }
    }
    rows.push(ThresholdScore {
        threshold: cur_threshold,
        score: total_score(fp_part, &window_parts),
        tp,
        tn,
        fp,
        fn_,
        total: tp + tn + fp + fn_,
    });
    rows
}

/// The best threshold row: the highest score, ties to the earlier (higher-threshold) row.
pub fn best_threshold(rows: &[ThresholdScore]) -> ThresholdScore {
    let mut best = rows[0];
    for r in &rows[1..] {
        if r.score > best.score {
            best = *r;
        }
    }
    best
}

/// A file's row for a given threshold (NAB's `Sweeper.scoreDataSet`): the row of that exact
/// threshold, else the last row above it. (NAB fails when the threshold is below every score of
/// the file; then every row is a detection, which is the last row.)
pub fn row_at_threshold(rows: &[ThresholdScore], threshold: f64) -> ThresholdScore {
    let mut prev: Option<ThresholdScore> = None;
    for r in rows {
        if r.threshold == threshold {
            return *r;
        } else if r.threshold < threshold {
            return prev.unwrap_or(*r);
        }
        prev = Some(*r);
    }
    *rows.last().expect("at least the 1.1 row")
}

/// One labelled file of a detector's results, ready to score.
#[derive(Debug, Clone)]
pub struct ScoredFile {
    /// `category/name.csv`.
    pub relative_path: String,
    pub anomaly_scores: Vec<f64>,
    /// Inclusive row-index ranges of the label windows.
    pub windows: Vec<(usize, usize)>,
}

/// Per-file outcome under one profile.
#[derive(Debug, Clone, Serialize)]
pub struct FileScore {
    pub relative_path: String,
    pub row: ThresholdScore,
}

/// Outcome of one profile over the corpus.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileScore {
    pub profile: String,
    pub threshold: f64,
    /// Sum of the per-file raw scores at `threshold`.
    pub raw: f64,
    /// The null detector's raw corpus score under this profile.
    pub null_raw: f64,
    /// `tp_weight * number of windows`.
    pub perfect_raw: f64,
    /// `100 (raw - null) / (perfect - null)`.
    pub normalized: f64,
    pub files: Vec<FileScore>,
}

/// Runs the optimise + score + normalise steps of NAB for one profile.
pub fn score_corpus(files: &[ScoredFile], profile: &Profile, total_windows: usize) -> ProfileScore {
    let (raw, threshold, per_file) = optimize_and_score(files, &profile.cost);
    let null_files: Vec<ScoredFile> = files
        .iter()
        .map(|f| ScoredFile {
            relative_path: f.relative_path.clone(),
            anomaly_scores: vec![0.0; f.anomaly_scores.len()],
            windows: f.windows.clone(),
        })
        .collect();
    let (null_raw, _, _) = optimize_and_score(&null_files, &profile.cost);
    let perfect_raw = profile.cost.tp_weight * total_windows as f64;
    ProfileScore {
        profile: profile.name.clone(),
        threshold,
        raw,
        null_raw,
        perfect_raw,
        normalized: normalize(raw, null_raw, perfect_raw),
        files: per_file,
    }
}

/// `100 (raw - null) / (perfect - null)`.
pub fn normalize(raw: f64, null_raw: f64, perfect_raw: f64) -> f64 {
    100.0 * (raw - null_raw) / (perfect_raw - null_raw)
}

/// Corpus-wide threshold optimisation, then per-file scoring at that threshold.
/// Returns (sum of per-file scores, threshold, per-file rows).
pub fn optimize_and_score(files: &[ScoredFile], cost: &CostMatrix) -> (f64, f64, Vec<FileScore>) {
    let mut per_file_points = Vec::with_capacity(files.len());
    let mut all = Vec::new();
    let mut next_id = 0u32;
    for f in files {
        let pts = calc_sweep_score(&f.anomaly_scores, &f.windows, next_id, cost);
        next_id += f.windows.len() as u32;
        all.extend_from_slice(&pts);
        per_file_points.push(pts);
    }
    let best = best_threshold(&score_by_threshold(&all, cost));
    let mut raw = 0.0;
    let mut per_file = Vec::with_capacity(files.len());
    for (f, pts) in files.iter().zip(&per_file_points) {
        let row = row_at_threshold(&score_by_threshold(pts, cost), best.threshold);
        raw += row.score;
        per_file.push(FileScore {
            relative_path: f.relative_path.clone(),
            row,
        });
    }
    (raw, best.threshold, per_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(fp: f64, fn_: f64) -> CostMatrix {
        CostMatrix {
            tp_weight: 1.0,
            fp_weight: fp,
            fn_weight: fn_,
            tn_weight: 1.0,
        }
    }

    /// Scores one file at `threshold`. The first 15 % of the rows are probationary, so the tests
    /// keep their windows and detections after row 150 of 1000.
    fn file_score(
        scores: &[f64],
        windows: &[(usize, usize)],
        c: &CostMatrix,
        t: f64,
    ) -> ThresholdScore {
        let pts = calc_sweep_score(scores, windows, 0, c);
        row_at_threshold(&score_by_threshold(&pts, c), t)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn scaled_sigmoid_matches_nab_docstring() {
        assert!((scaled_sigmoid(-1.0) - 0.98661).abs() < 1e-5);
        assert!((scaled_sigmoid(-0.5) - 0.84828).abs() < 1e-5);
        assert!(close(scaled_sigmoid(0.0), 0.0));
        assert!((scaled_sigmoid(1.0) + 0.98661).abs() < 1e-5);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
        assert_eq!(scaled_sigmoid(10.0), -1.0);
    }

    #[test]
    fn probation_is_15_percent_capped_at_750_rows() {
        assert_eq!(probationary_length(4032), 604.0);
        assert_eq!(probationary_length(100), 15.0);
        assert_eq!(probationary_length(22695), 750.0);
    }

    #[test]
    fn null_case_scores_zero() {
        let c = cost(1.0, 1.0);
        let r = file_score(&[0.0; 100], &[], &c, 0.5);
        assert_eq!(r.score, 0.0);
        assert_eq!((r.tp, r.fp, r.fn_), (0, 0, 0));
    }

    #[test]
    fn missed_windows_cost_fn_weight_each() {
        let c = cost(1.0, 2.0);
        let r = file_score(&[0.0; 1000], &[(300, 309)], &c, 1.0);
        assert!(close(r.score, -2.0));
        let r = file_score(
            &[0.0; 2000],
            &[(300, 309), (700, 709), (1100, 1109), (1500, 1509)],
            &c,
            1.0,
        );
        assert!(close(r.score, -8.0));
        assert_eq!(r.fn_, 40);
    }

    #[test]
    fn detection_at_window_start_earns_full_tp_weight_and_earlier_is_better() {
        let c = cost(0.11, 1.0);
        let w = [(300usize, 399usize)];
        let mut s = vec![0.0; 1000];
        s[300] = 1.0;
        assert!(close(file_score(&s, &w, &c, 0.5).score, 1.0));
        let mut mid = vec![0.0; 1000];
        mid[350] = 1.0;
        let mut late = vec![0.0; 1000];
        late[399] = 1.0;
        let (m, l) = (
            file_score(&mid, &w, &c, 0.5).score,
            file_score(&late, &w, &c, 0.5).score,
        );
        assert!(1.0 > m && m > l && l > 0.0, "{m} {l}");
        // Position -0.5 of the window, relative to NAB's max TP.
        assert!((m - scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0)).abs() < 1e-9);
    }

    #[test]
    fn only_the_first_detection_in_a_window_counts() {
        let c = cost(0.11, 1.0);
        let w = [(300usize, 399usize)];
        let mut one = vec![0.0; 1000];
        one[320] = 1.0;
        let mut many = one.clone();
        for v in &mut many[321..=399] {
            *v = 1.0;
        }
        let a = file_score(&one, &w, &c, 0.5);
        let b = file_score(&many, &w, &c, 0.5);
        assert!(close(a.score, b.score));
        assert_eq!(b.tp, 80);
    }

    #[test]
    fn false_positives_cost_less_just_after_a_window() {
        let c = cost(0.11, 1.0);
        let w = [(300usize, 399usize)];
        let mut before = vec![0.0; 1000];
        before[200] = 1.0;
        let mut just_after = vec![0.0; 1000];
        just_after[401] = 1.0;
        let mut far_after = vec![0.0; 1000];
        far_after[900] = 1.0;
        let b = file_score(&before, &w, &c, 0.5).score + 1.0; // minus the missed window
        let j = file_score(&just_after, &w, &c, 0.5).score + 1.0;
        let f = file_score(&far_after, &w, &c, 0.5).score + 1.0;
        assert!(close(b, -0.11), "{b}");
        assert!(j < 0.0 && j > -0.01, "{j}");
        assert!(close(f, -0.11), "{f}");
    }

    #[test]
    fn probationary_detections_are_ignored() {
        let c = cost(0.11, 1.0);
        let mut s = vec![0.0; 1000];
        s[10] = 1.0; // inside the first 150 rows
        let r = file_score(&s, &[], &c, 0.5);
        assert_eq!(r.score, 0.0);
        assert_eq!(r.total, 850);
    }

    #[test]
    fn threshold_rows_count_scores_at_or_above_the_threshold() {
        let c = cost(0.11, 1.0);
        let mut s = vec![0.1; 1000];
        s[320] = 0.9;
        s[800] = 0.7;
        let pts = calc_sweep_score(&s, &[(300, 399)], 0, &c);
        let rows = score_by_threshold(&pts, &c);
        let t: Vec<f64> = rows.iter().map(|r| r.threshold).collect();
        assert_eq!(t, vec![1.1, 0.9, 0.7, 0.1]);
        assert_eq!((rows[0].tp, rows[0].fp), (0, 0));
        assert_eq!((rows[1].tp, rows[1].fp), (1, 0));
        assert_eq!((rows[2].tp, rows[2].fp), (1, 1));
        let best = best_threshold(&rows);
        assert_eq!(best.threshold, 0.9);
        // A threshold between two scores matches the row above it.
        assert_eq!(row_at_threshold(&rows, 0.8).threshold, 0.9);
    }

    #[test]
    fn corpus_normalisation_puts_null_at_0_and_perfect_at_100() {
        let files: Vec<ScoredFile> = (0..3)
            .map(|i| {
                let windows = vec![(400 + 10 * i, 450 + 10 * i), (700, 760)];
                let mut s = vec![0.0; 1000];
                for &(l, _) in &windows {
                    s[l] = 1.0;
                }
                ScoredFile {
                    relative_path: format!("c/f{i}.csv"),
                    anomaly_scores: s,
                    windows,
                }
            })
            .collect();
        for p in official_profiles() {
            let perfect = score_corpus(&files, &p, 6);
            assert!(
                (perfect.normalized - 100.0).abs() < 1e-9,
                "{}",
                perfect.normalized
            );
            let null: Vec<ScoredFile> = files
                .iter()
                .map(|f| ScoredFile {
                    anomaly_scores: vec![0.0; 1000],
                    ..f.clone()
                })
                .collect();
            let n = score_corpus(&null, &p, 6);
            assert_eq!(n.normalized, 0.0);
            assert_eq!(n.threshold, NO_DETECTION_THRESHOLD);
        }
    }

    #[test]
    fn one_threshold_is_shared_by_the_corpus() {
        // File a's detection sits at 0.6, file b's at 0.4; b also has a 0.5 false positive.
        let c = cost(0.11, 1.0);
        let mk = |det: usize, v: f64, fp: Option<(usize, f64)>| {
            let mut s = vec![0.0; 1000];
            s[det] = v;
            if let Some((i, x)) = fp {
                s[i] = x;
            }
            ScoredFile {
                relative_path: String::new(),
                anomaly_scores: s,
                windows: vec![(500, 599)],
            }
        };
        let files = [mk(500, 0.6, None), mk(500, 0.4, Some((900, 0.5)))];
        let (raw, t, per_file) = optimize_and_score(&files, &c);
        // Lowering the threshold to 0.4 gains a window (+2) for one false positive (-0.11).
        assert_eq!(t, 0.4);
        assert!(close(raw, 2.0 - 0.11));
        assert_eq!(per_file.len(), 2);
    }
}
