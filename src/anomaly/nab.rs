//! The Numenta Anomaly Benchmark harness: loads the corpus (`data/<category>/<name>.csv`,
//! `labels/combined_windows.json`, `profiles.json`), runs a detector over every file exactly as a
//! stream (a fresh detector per file, rows in file order, one `update` per row), writes NAB's
//! result layout (`<out>/<detector>/<category>/<detector>_<name>.csv` with
//! `timestamp,value,anomaly_score,label`, the same rows in the same order as the data file), then
//! reads those files back and scores them with [`crate::anomaly::nab_score`].

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::anomaly::detector::{build_detector, Detector};
use crate::anomaly::nab_score::{self, Profile, ProfileScore, ScoredFile};
use crate::anomaly::{AnomalyConfig, AnomalyError};

/// One data file of the corpus.
#[derive(Debug, Clone)]
pub struct NabFile {
    /// `category/name.csv`, the key of the label file.
    pub relative_path: String,
    pub category: String,
    /// `name.csv`.
    pub file_name: String,
    /// The raw `timestamp` and `value` fields, kept verbatim for the result files.
    pub raw_timestamps: Vec<String>,
    pub raw_values: Vec<String>,
    pub ts_ms: Vec<i64>,
    pub values: Vec<f64>,
    /// Label windows as inclusive row-index ranges.
    pub windows: Vec<(usize, usize)>,
}

impl NabFile {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// 1 inside a label window, else 0 (the `label` column of the results).
    pub fn labels(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        for &(l, r) in &self.windows {
            for v in &mut out[l..=r] {
                *v = 1;
            }
        }
        out
    }
}

/// The labelled corpus plus the scoring profiles.
#[derive(Debug, Clone)]
pub struct NabCorpus {
    pub files: Vec<NabFile>,
    /// Number of windows in the label file (NAB's "perfect" count).
    pub total_windows: usize,
    pub profiles: Vec<Profile>,
}

/// Parses NAB timestamps (`2014-04-10 07:15:00`, optionally with fractional seconds) to epoch ms.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S"))
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

fn read_to_string(path: &Path) -> Result<String, AnomalyError> {
    fs::read_to_string(path).map_err(|e| AnomalyError::io(path, e))
}

/// Reads a `timestamp,value[,...]` CSV; returns the header fields and the rows' fields.
fn read_csv(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), AnomalyError> {
    let text = read_to_string(path)?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| AnomalyError::Parse {
            path: path.to_path_buf(),
            line: 1,
            msg: "empty file".into(),
        })?
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let rows = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(|s| s.to_string()).collect())
        .collect();
    Ok((header, rows))
}

/// Loads the corpus under `root` (the NAB directory holding `data/`, `labels/` and
/// `profiles.json` or `config/profiles.json`). Files are taken from the label file, in sorted order.
pub fn load_corpus(root: &Path) -> Result<NabCorpus, AnomalyError> {
    let labels_path = root.join("labels").join("combined_windows.json");
    let text = read_to_string(&labels_path)?;
    let labels: HashMap<String, Vec<[String; 2]>> =
        serde_json::from_str(&text).map_err(|source| AnomalyError::Json {
            path: labels_path.clone(),
            source,
        })?;
    let profiles_path = [
        root.join("profiles.json"),
        root.join("config/profiles.json"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| AnomalyError::Corpus(format!("no profiles.json under {}", root.display())))?;
    let profiles = nab_score::load_profiles(&profiles_path)?;

    let mut keys: Vec<&String> = labels.keys().collect();
    keys.sort();
    let mut files = Vec::with_capacity(keys.len());
    let mut total_windows = 0;
    for key in keys {
        let path = root.join("data").join(key);
        let (header, rows) = read_csv(&path)?;
        if header.len() < 2 || header[0] != "timestamp" || header[1] != "value" {
            return Err(AnomalyError::Parse {
                path,
                line: 1,
                msg: format!("expected header timestamp,value, got {header:?}"),
            });
        }
        let mut f = NabFile {
            relative_path: key.clone(),
            category: key.split('/').next().unwrap_or("").to_string(),
            file_name: key.rsplit('/').next().unwrap_or(key).to_string(),
            raw_timestamps: Vec::with_capacity(rows.len()),
            raw_values: Vec::with_capacity(rows.len()),
            ts_ms: Vec::with_capacity(rows.len()),
            values: Vec::with_capacity(rows.len()),
            windows: Vec::new(),
        };
        for (i, row) in rows.into_iter().enumerate() {
            let bad = |msg: String| AnomalyError::Parse {
                path: path.clone(),
                line: i + 2,
                msg,
            };
            if row.len() < 2 {
                return Err(bad(format!("expected 2 fields, got {}", row.len())));
            }
            let ts = parse_timestamp(&row[0])
                .ok_or_else(|| bad(format!("bad timestamp {:?}", row[0])))?;
            let v: f64 = row[1]
                .trim()
                .parse()
                .map_err(|_| bad(format!("bad value {:?}", row[1])))?;
            f.ts_ms.push(ts);
            f.values.push(v);
            f.raw_timestamps.push(row[0].clone());
            f.raw_values.push(row[1].clone());
        }
        for [start, end] in &labels[key] {
            let (s, e) = match (parse_timestamp(start), parse_timestamp(end)) {
                (Some(s), Some(e)) => (s, e),
                _ => {
                    return Err(AnomalyError::Corpus(format!(
                        "{key}: bad window [{start}, {end}]"
                    )))
                }
            };
            // As NAB's sweeper: a window starts at the first row carrying its start timestamp and
            // ends at the first row carrying its end timestamp.
            let left = f.ts_ms.iter().position(|&t| t == s);
            let right = f.ts_ms.iter().position(|&t| t == e);
            match (left, right) {
                (Some(l), Some(r)) if l <= r => f.windows.push((l, r)),
                _ => {
                    return Err(AnomalyError::Corpus(format!(
                        "{key}: window [{start}, {end}] does not match the file's rows"
                    )))
                }
            }
        }
        f.windows.sort_unstable();
        if f.windows.windows(2).any(|w| w[1].0 <= w[0].1) {
            return Err(AnomalyError::Corpus(format!("{key}: overlapping windows")));
        }
        total_windows += f.windows.len();
        files.push(f);
    }
    if files.is_empty() {
        return Err(AnomalyError::Corpus(format!(
            "no labelled files under {}",
            root.display()
        )));
    }
    Ok(NabCorpus {
        files,
        total_windows,
        profiles,
    })
}

/// Runs a fresh detector over one file as a stream; returns one score per row.
pub fn run_detector_on(detector: &mut dyn Detector, file: &NabFile) -> Vec<f64> {
    file.ts_ms
        .iter()
        .zip(&file.values)
        .map(|(&t, &v)| detector.update(t, v))
        .collect()
}

/// Runs `make()`'s detectors over every file (two worker threads); scores in corpus file order.
pub fn run_corpus<'a, F>(corpus: &NabCorpus, make: F) -> Vec<Vec<f64>>
where
    F: Fn() -> Box<dyn Detector + 'a> + Sync,
{
    let n = corpus.files.len();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Vec<f64>>> =
        (0..n).map(|_| std::sync::Mutex::new(Vec::new())).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let mut d = make();
                let scores = run_detector_on(d.as_mut(), &corpus.files[i]);
                *results[i].lock().expect("no poisoning") = scores;
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().expect("no poisoning"))
        .collect()
}

/// Path of one result file in NAB's layout.
pub fn result_path(out: &Path, detector: &str, file: &NabFile) -> PathBuf {
    out.join(detector)
        .join(&file.category)
        .join(format!("{detector}_{}", file.file_name))
}

/// Writes one result file; scores are written in Rust's shortest round-trip form, so reading
/// them back gives the very same `f64`s.
pub fn write_result(path: &Path, file: &NabFile, scores: &[f64]) -> Result<(), AnomalyError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| AnomalyError::io(dir, e))?;
    }
    let fh = fs::File::create(path).map_err(|e| AnomalyError::io(path, e))?;
    let mut w = BufWriter::new(fh);
    let labels = file.labels();
    let io = |e| AnomalyError::io(path, e);
    writeln!(w, "timestamp,value,anomaly_score,label").map_err(io)?;
    for i in 0..file.len() {
        writeln!(
            w,
            "{},{},{},{}",
            file.raw_timestamps[i], file.raw_values[i], scores[i], labels[i]
        )
        .map_err(io)?;
    }
    w.flush().map_err(io)
}

/// Reads a detector's result files back (checking rows against the data) for scoring.
pub fn read_results(
    out: &Path,
    detector: &str,
    corpus: &NabCorpus,
) -> Result<Vec<ScoredFile>, AnomalyError> {
    corpus
        .files
        .iter()
        .map(|f| {
            let path = result_path(out, detector, f);
            let (header, rows) = read_csv(&path)?;
            let col = header
                .iter()
                .position(|h| h == "anomaly_score")
                .ok_or_else(|| AnomalyError::Parse {
                    path: path.clone(),
                    line: 1,
                    msg: "no anomaly_score column".into(),
                })?;
            if rows.len() != f.len() {
                return Err(AnomalyError::Corpus(format!(
                    "{}: {} rows, data file has {}",
                    path.display(),
                    rows.len(),
                    f.len()
                )));
            }
            let mut scores = Vec::with_capacity(rows.len());
            for (i, row) in rows.iter().enumerate() {
                let bad = |msg: String| AnomalyError::Parse {
                    path: path.clone(),
                    line: i + 2,
                    msg,
                };
                if parse_timestamp(&row[0]) != Some(f.ts_ms[i]) {
                    return Err(bad(format!("timestamp {:?} differs from the data", row[0])));
                }
                let s: f64 = row
                    .get(col)
                    .ok_or_else(|| bad("missing anomaly_score".into()))?
                    .trim()
                    .parse()
                    .map_err(|_| bad("bad anomaly_score".into()))?;
                scores.push(s);
            }
            Ok(ScoredFile {
                relative_path: f.relative_path.clone(),
                anomaly_scores: scores,
                windows: f.windows.clone(),
            })
        })
        .collect()
}

/// Scores result files under every profile.
pub fn score_results(files: &[ScoredFile], corpus: &NabCorpus) -> Vec<ProfileScore> {
    corpus
        .profiles
        .iter()
        .map(|p| nab_score::score_corpus(files, p, corpus.total_windows))
        .collect()
}

/// Outcome of `mcpwatch eval nab`.
#[derive(Debug, Clone, Serialize)]
pub struct NabReport {
    pub detector: String,
    pub files: usize,
    pub points: usize,
    /// Wall time of the detection step (all files, all worker threads).
    pub detect_seconds: f64,
    /// The largest `state_bytes` seen across the per-file detectors at the end of their file.
    pub max_state_bytes: usize,
    pub profiles: Vec<ProfileScore>,
}

impl NabReport {
    /// Normalised score of a profile by NAB name.
    pub fn score(&self, profile: &str) -> Option<f64> {
        self.profiles
            .iter()
            .find(|p| p.profile == profile)
            .map(|p| p.normalized)
    }
}

impl fmt::Display for NabReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "detector={} files={} points={} detect_seconds={:.3} max_state_bytes={}",
            self.detector, self.files, self.points, self.detect_seconds, self.max_state_bytes
        )?;
        for p in &self.profiles {
            let (tp, fp) = p
                .files
                .iter()
                .fold((0, 0), |(tp, fp), f| (tp + f.row.tp, fp + f.row.fp));
            writeln!(
                f,
                "profile={} threshold={} raw={:.4} null={:.1} perfect={:.1} tp_rows={} fp_rows={} score={:.2}",
                p.profile, p.threshold, p.raw, p.null_raw, p.perfect_raw, tp, fp, p.normalized
            )?;
        }
        let s = |name| self.score(name).unwrap_or(f64::NAN);
        write!(
            f,
            "nab_standard={:.2} nab_low_fp={:.2} nab_low_fn={:.2}",
            s("standard"),
            s("reward_low_FP_rate"),
            s("reward_low_FN_rate")
        )
    }
}

/// Writes NAB's per-profile score tables (`<detector>_<profile>_scores.csv`) and a
/// `final_results.json` next to the result files.
fn write_score_tables(out: &Path, report: &NabReport) -> Result<(), AnomalyError> {
    let dir = out.join(&report.detector);
    for p in &report.profiles {
        let path = dir.join(format!("{}_{}_scores.csv", report.detector, p.profile));
        let mut s = String::from("Detector,Profile,File,Threshold,Score,TP,TN,FP,FN,Total_Count\n");
        let mut tot = [0usize; 5];
        for f in &p.files {
            let r = &f.row;
            s.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{}\n",
                report.detector,
                p.profile,
                f.relative_path,
                p.threshold,
                r.score,
                r.tp,
                r.tn,
                r.fp,
                r.fn_,
                r.total
            ));
            for (t, v) in tot.iter_mut().zip([r.tp, r.tn, r.fp, r.fn_, r.total]) {
                *t += v;
            }
        }
        s.push_str(&format!(
            "Totals,,,,{},{},{},{},{},{}\n",
            p.raw, tot[0], tot[1], tot[2], tot[3], tot[4]
        ));
        fs::write(&path, s).map_err(|e| AnomalyError::io(&path, e))?;
    }
    let path = dir.join("final_results.json");
    let summary: HashMap<&str, HashMap<&str, f64>> = HashMap::from([(
        report.detector.as_str(),
        report
            .profiles
            .iter()
            .map(|p| (p.profile.as_str(), p.normalized))
            .collect(),
    )]);
    let json = serde_json::to_string_pretty(&summary).map_err(|source| AnomalyError::Json {
        path: path.clone(),
        source,
    })?;
    fs::write(&path, json).map_err(|e| AnomalyError::io(&path, e))
}

/// `mcpwatch eval nab`: runs `detector` over the corpus at `data` as a stream, writes the result
/// layout under `out`, scores it and returns the report (its `Display` ends with the
/// `nab_standard=… nab_low_fp=… nab_low_fn=…` line).
pub fn run_nab_eval(data: &Path, out: &Path, detector: &str) -> Result<NabReport, AnomalyError> {
    let cfg = AnomalyConfig {
        detector: detector.to_string(),
        ..AnomalyConfig::from_env()?
    };
    cfg.validate()?;
    if detector.contains('_') {
        return Err(AnomalyError::InvalidConfig(
            "NAB detector names cannot contain `_`".into(),
        ));
    }
    let corpus = load_corpus(data)?;
    build_detector(detector, &cfg)?; // fail early on an unknown name

    let started = Instant::now();
    let max_state = std::sync::atomic::AtomicUsize::new(0);
    let scores = run_corpus(&corpus, || {
        Box::new(StateProbe {
            inner: build_detector(detector, &cfg).expect("validated above"),
            max: &max_state,
        })
    });
    let detect_seconds = started.elapsed().as_secs_f64();

    for (f, s) in corpus.files.iter().zip(&scores) {
        write_result(&result_path(out, detector, f), f, s)?;
    }
    let files = read_results(out, detector, &corpus)?;
    let report = NabReport {
        detector: detector.to_string(),
        files: corpus.files.len(),
        points: corpus.files.iter().map(NabFile::len).sum(),
        detect_seconds,
        max_state_bytes: max_state.load(std::sync::atomic::Ordering::Relaxed),
        profiles: score_results(&files, &corpus),
    };
    write_score_tables(out, &report)?;
    Ok(report)
}

/// Records the detector's state size when the file ends (on drop).
struct StateProbe<'a> {
    inner: Box<dyn Detector>,
    max: &'a std::sync::atomic::AtomicUsize,
}

impl Detector for StateProbe<'_> {
    fn update(&mut self, ts_ms: i64, value: f64) -> f64 {
        self.inner.update(ts_ms, value)
    }
    fn state_bytes(&self) -> usize {
        self.inner.state_bytes()
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn alert_threshold(&self) -> f64 {
        self.inner.alert_threshold()
    }
}

impl Drop for StateProbe<'_> {
    fn drop(&mut self) {
        self.max.fetch_max(
            self.inner.state_bytes(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}
