//! `mcpwatch features check` and `mcpwatch features export`: the engine against the seed CSV.
//!
//! What the seed CSV (`lstm_ready_cluster_data.csv`) turned out to be, reverse-engineered from
//! its values (see the README feature table):
//!
//! 1. The seed computed every derived feature with pandas over its **hourly rows** (row-based:
//!    `shift(k)`, `rolling(k, min_periods=1)`, `pct_change(k)`, `diff(k)`), back-filling the
//!    NaNs of the first rows (`bfill`), and the quantile family (`qcut`, `cut`, `quantile`) over
//!    the **whole file**. 699 hourly rows existed.
//! 2. It then resampled to 30 minutes: the 21 hours missing from the trace were filled by
//!    linear interpolation of *every* column (even `hour_sin`), and each half-hour row copies the
//!    previous hour's derived columns while `total_events`, `unique_machines`, `avg_cpu`,
//!    `avg_memory` are interpolated towards the next hour.
//!
//! So the seed's features are functions of its 699 observed hourly rows; the other 740 rows are
//! resampling artifacts that read the next hour (the future). `check` therefore reconstructs
//! the hourly grid ([`CheckGrid::Seed`]): rows off the hour are resampled, on-the-hour rows that
//! lie exactly on the straight line between their neighbours in all 84 columns are the seed's
//! interpolation; the rest are fed to a [`ServiceState`] as consecutive buckets (the seed's
//! row-based windows) and all 82 columns are compared on them. [`CheckGrid::EveryRow`] instead
//! treats every CSV row as a 30-minute bucket, for comparison.
//!
//! `export` builds what the daemon itself would have computed from the seed's raw columns: one
//! row per hour, hours the seed did not observe forward-filled (as a live gap), every feature
//! causal. Training on it keeps training and serving features identical. With
//! [`CheckGrid::EveryRow`] ([`export_csv_with`], `--grid rows`) it writes one row per input row
//! instead, each input row being one 30-minute bucket — the row semantics of the seed CSV that
//! the forecast evaluation (`mcpwatch eval forecast`) and the shipped model use.

use std::fmt;
use std::io::Write;
use std::path::Path;

use super::bucket::RawRow;
use super::defs::{Labels, SeedRelation};
use super::names::{csv_header, FEATURE_NAMES, N_FEATURES, RAW_FEATURES};
use super::reference::seed_global_labels;
use super::state::ServiceState;
use super::{FeatureError, FeatureVector, FeaturesConfig, Params};

/// `hour_offset` 0 of the seed CSV is taken as 2011-05-01T00:00Z: a Sunday and the 1st of a
/// month, which makes the calendar features computed from real timestamps (0 = Sunday,
/// 0-based day of month) equal the seed's offset-derived ones (`day_of_week = day % 7`,
/// `is_weekend` on days 0 and 6).
pub const SEED_EPOCH_MS: i64 = 1_304_208_000_000;

/// Columns of a seed-format CSV: `hour_offset`, `total_events`, then the 82 features.
const N_COLS: usize = 2 + N_FEATURES;

/// How CSV rows map onto buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckGrid {
    /// Reconstruct the seed's hourly observations (see the module docs) and compare on them.
    Seed,
    /// Every CSV row is one 30-minute bucket, compared everywhere.
    EveryRow,
}

/// Options of [`run_check_with`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOptions {
    /// How rows map onto buckets.
    pub grid: CheckGrid,
    /// A value matches when `|a-b| <= tolerance · max(|a|, |b|, 1e-12)`. The default 1e-6 sits
    /// well above the f32 rounding of stored aggregates (≤ 1.2e-7) and far below any definition
    /// difference.
    pub tolerance: f64,
    /// Engine settings (only `history_buckets` and `utc_offset_secs` matter here).
    pub config: FeaturesConfig,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            grid: CheckGrid::Seed,
            tolerance: 1e-6,
            config: FeaturesConfig::default(),
        }
    }
}

/// Outcome for one feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureVerdict {
    /// Equal on every compared row.
    Match,
    /// Equal on every row except the seed's first rows, which it back-filled from later rows.
    MatchAfterWarmup,
    /// Differs because the seed's definition reads the whole file (not causal).
    SeedNonCausal,
    /// Differs although the seed's definition is causal: a bug.
    Mismatch,
}

impl FeatureVerdict {
    /// Whether this counts towards `matched`.
    pub fn matched(self) -> bool {
        matches!(
            self,
            FeatureVerdict::Match | FeatureVerdict::MatchAfterWarmup
        )
    }

    fn label(self) -> &'static str {
        match self {
            FeatureVerdict::Match => "match",
            FeatureVerdict::MatchAfterWarmup => "match*",
            FeatureVerdict::SeedNonCausal => "seed-future",
            FeatureVerdict::Mismatch => "MISMATCH",
        }
    }
}

/// Agreement of one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureCheck {
    /// Feature name.
    pub name: &'static str,
    /// Whether it matched, and if not why.
    pub verdict: FeatureVerdict,
    /// Rows compared.
    pub compared: usize,
    /// Rows within tolerance among those compared.
    pub agreeing: usize,
    /// Leading rows excluded because the seed back-filled them from later rows.
    pub warmup_excluded: usize,
    /// Largest relative error over the compared rows.
    pub max_rel_err: f64,
    /// For the quantile family: rows where the seed's whole-file definition, evaluated by
    /// mcpwatch's formulas over the whole file, reproduces the seed column.
    pub seed_definition_reproduced: Option<usize>,
}

/// Result of `features check`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// The checked file.
    pub path: String,
    /// The row-to-bucket mapping used.
    pub grid: CheckGrid,
    /// Relative tolerance of a match.
    pub tolerance: f64,
    /// Data rows in the file.
    pub rows: usize,
    /// Rows compared (observed hourly rows for [`CheckGrid::Seed`]).
    pub observed: usize,
    /// Rows off the hourly grid (the seed's half-hour resampling).
    pub resampled: usize,
    /// On-the-hour rows the seed filled by linear interpolation.
    pub interpolated: usize,
    /// One entry per feature, in model order.
    pub features: Vec<FeatureCheck>,
    /// Features counted as matching.
    pub matched: usize,
    /// Largest relative error over the matching features' compared rows.
    pub max_rel_err: f64,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "features check: {}", self.path)?;
        match self.grid {
            CheckGrid::Seed => writeln!(
                f,
                "rows={} hourly_observed={} hourly_interpolated_by_seed={} half_hour_resampled_by_seed={} (compared on the observed hourly rows)",
                self.rows, self.observed, self.interpolated, self.resampled
            )?,
            CheckGrid::EveryRow => writeln!(f, "rows={} (every row a 30-minute bucket)", self.rows)?,
        }
        writeln!(f, "tolerance: relative {:e}", self.tolerance)?;
        writeln!(
            f,
            "{:<24} {:<12} {:>8} {:>8} {:>7} {:>11}  note",
            "feature", "verdict", "compared", "agree", "warmup", "max_rel_err"
        )?;
        for c in &self.features {
            let note = match (c.verdict, c.seed_definition_reproduced) {
                (_, Some(n)) => format!(
                    "seed ranks against the whole file (future); its definition over the whole file reproduces {n}/{}",
                    c.compared
                ),
                (FeatureVerdict::MatchAfterWarmup, _) => {
                    format!("first {} rows: seed back-filled from row {} (future)", c.warmup_excluded, c.warmup_excluded)
                }
                _ => String::new(),
            };
            writeln!(
                f,
                "{:<24} {:<12} {:>8} {:>8} {:>7} {:>11.3e}  {}",
                c.name,
                c.verdict.label(),
                c.compared,
                c.agreeing,
                c.warmup_excluded,
                c.max_rel_err,
                note
            )?;
        }
        write!(
            f,
            "matched={}/{} max_rel_err={:.3e}",
            self.matched, N_FEATURES, self.max_rel_err
        )
    }
}

/// Relative error with a tiny absolute floor.
fn rel_err(a: f64, b: f64) -> f64 {
    if a == b {
        return 0.0;
    }
    (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
}

/// Parsed seed-format CSV: per row, the 84 columns in canonical order (NaN where absent).
struct SeedCsv {
    rows: Vec<[f64; N_COLS]>,
    /// Whether all 84 columns were present.
    complete: bool,
}

fn read_seed_csv(path: &Path, need_all: bool) -> Result<SeedCsv, FeatureError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FeatureError::Io {
        path: p.clone(),
        source,
    })?;
    let csv_err = |line: usize, message: String| FeatureError::Csv {
        path: p.clone(),
        line,
        message,
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| csv_err(1, "empty file".into()))?
        .split(',')
        .map(str::trim)
        .collect();
    let canonical: Vec<&str> = super::names::CSV_LEADING_COLUMNS
        .iter()
        .chain(FEATURE_NAMES.iter())
        .copied()
        .collect();
    let mut map = [usize::MAX; N_COLS];
    let mut complete = true;
    for (c, name) in canonical.iter().enumerate() {
        match header.iter().position(|h| h == name) {
            Some(i) => map[c] = i,
            None if need_all || c < 2 + RAW_FEATURES => {
                return Err(csv_err(1, format!("missing column `{name}` (a seed-format CSV has hour_offset, total_events and the 82 features)")))
            }
            None => complete = false,
        }
    }
    let mut rows = Vec::new();
    for (ln, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let mut row = [f64::NAN; N_COLS];
        for c in 0..N_COLS {
            if map[c] == usize::MAX {
                continue;
            }
            let s = fields.get(map[c]).map(|s| s.trim()).unwrap_or("");
            row[c] = if s.is_empty() || s.eq_ignore_ascii_case("nan") {
                f64::NAN
            } else {
                s.parse::<f64>().map_err(|_| {
                    csv_err(
                        ln + 2,
                        format!("column `{}`: `{s}` is not a number", canonical[c]),
                    )
                })?
            };
        }
        if !row[0].is_finite() {
            return Err(csv_err(ln + 2, "hour_offset is missing".into()));
        }
        if rows
            .last()
            .is_some_and(|prev: &[f64; N_COLS]| prev[0] >= row[0])
        {
            return Err(csv_err(
                ln + 2,
                "hour_offset must increase from row to row".into(),
            ));
        }
        rows.push(row);
    }
    Ok(SeedCsv { rows, complete })
}

fn raw_row(r: &[f64; N_COLS], prev: Option<&RawRow>) -> RawRow {
    let mut aggs = [0.0; RAW_FEATURES];
    aggs.copy_from_slice(&r[2..2 + RAW_FEATURES]);
    RawRow::from_values(r[1], &aggs, prev)
}

fn start_ms(hour_offset: f64) -> i64 {
    SEED_EPOCH_MS + (hour_offset * 3_600_000.0).round() as i64
}

/// Classification of the rows of a seed-format CSV on the hourly grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    /// Off the hour: the seed's half-hour resampling.
    Resampled,
    /// On the hour, exactly between its neighbours in every column: the seed's interpolation.
    Interpolated,
    /// A genuine hourly observation.
    Observed,
}

fn classify(csv: &SeedCsv) -> Vec<RowKind> {
    let on_grid = |h: f64| (h - h.round()).abs() < 1e-9;
    let by_hour: std::collections::HashMap<i64, usize> = csv
        .rows
        .iter()
        .enumerate()
        .filter(|(_, r)| on_grid(r[0]))
        .map(|(i, r)| (r[0].round() as i64, i))
        .collect();
    csv.rows
        .iter()
        .map(|r| {
            if !on_grid(r[0]) {
                return RowKind::Resampled;
            }
            let h = r[0].round() as i64;
            let (Some(&a), Some(&b)) = (by_hour.get(&(h - 1)), by_hour.get(&(h + 1))) else {
                return RowKind::Observed;
            };
            let (ra, rb) = (&csv.rows[a], &csv.rows[b]);
            let on_line = (0..N_COLS).all(|c| {
                let (x, mid) = (r[c], (ra[c] + rb[c]) / 2.0);
                !x.is_finite() || !mid.is_finite() || (x - mid).abs() <= 1e-9 * x.abs().max(1.0)
            });
            if on_line {
                RowKind::Interpolated
            } else {
                RowKind::Observed
            }
        })
        .collect()
}

/// Leading rows of a feature that the seed back-filled from later rows (`bfill` of the NaNs of
/// `rolling(k).std()` at row 0 and of `pct_change(k)`/`diff(k)` at rows `0..k`).
fn seed_warmup(name: &str) -> usize {
    match name {
        "roll12_std" | "roll24_std" => 1,
        "pct_change_1h" | "diff_1h" => 1,
        "pct_change_6h" | "diff_6h" => 6,
        "pct_change_24h" | "diff_24h" => 24,
        _ => 0,
    }
}

/// `mcpwatch features check --csv <file>` with the defaults (seed grid, tolerance 1e-6).
pub fn run_check(csv: &Path) -> Result<CheckReport, FeatureError> {
    run_check_with(csv, &CheckOptions::default())
}

/// `features check` with explicit options.
pub fn run_check_with(csv_path: &Path, opts: &CheckOptions) -> Result<CheckReport, FeatureError> {
    opts.config.validate()?;
    let csv = read_seed_csv(csv_path, true)?;
    let kinds = match opts.grid {
        CheckGrid::Seed => classify(&csv),
        CheckGrid::EveryRow => vec![RowKind::Observed; csv.rows.len()],
    };
    let p: Params = opts.config.params();
    let mut state = ServiceState::with_params(&p);
    let mut seed: Vec<&[f64; N_COLS]> = Vec::new();
    let mut ours: Vec<FeatureVector> = Vec::new();
    let mut prev: Option<RawRow> = None;
    for (r, k) in csv.rows.iter().zip(&kinds) {
        if *k != RowKind::Observed {
            continue;
        }
        let row = raw_row(r, prev.as_ref());
        state.push_row_p(start_ms(r[0]), &row, &p);
        prev = Some(row);
        seed.push(r);
        ours.push(state.features().expect("a row was pushed"));
    }
    // The seed's own (whole-file) quantile family, evaluated with our formulas.
    let col = |name: &str| 2 + super::names::index_of(name).expect("known feature");
    let global: Vec<Labels> = seed_global_labels(
        &seed.iter().map(|r| r[1]).collect::<Vec<_>>(),
        &seed.iter().map(|r| r[col("avg_cpu")]).collect::<Vec<_>>(),
        &seed
            .iter()
            .map(|r| r[col("avg_memory")])
            .collect::<Vec<_>>(),
    );
    let table = super::defs::feature_table();
    let mut features = Vec::with_capacity(N_FEATURES);
    for (i, doc) in table.iter().enumerate() {
        let warm = seed_warmup(doc.name).min(seed.len());
        let (mut agreeing, mut max_err) = (0, 0.0f64);
        for t in warm..seed.len() {
            let e = rel_err(seed[t][2 + i], ours[t][i]);
            max_err = max_err.max(e);
            agreeing += usize::from(e <= opts.tolerance);
        }
        let compared = seed.len() - warm;
        let reproduced = (doc.seed == SeedRelation::CausalReplacement).then(|| {
            (0..seed.len())
                .filter(|&t| {
                    let l = &global[t];
                    let v = match doc.name {
                        "events_quantile" => f64::from(l.events_q),
                        "cpu_quantile" => f64::from(l.cpu_q),
                        "memory_quantile" => f64::from(l.memory_q),
                        "is_high_load" => f64::from(u8::from(l.high)),
                        "is_low_load" => f64::from(u8::from(l.low)),
                        _ => f64::from(l.load_cat),
                    };
                    v == seed[t][2 + i]
                })
                .count()
        });
        let verdict = if agreeing == compared {
            if warm > 0 {
                FeatureVerdict::MatchAfterWarmup
            } else {
                FeatureVerdict::Match
            }
        } else if doc.seed == SeedRelation::CausalReplacement {
            FeatureVerdict::SeedNonCausal
        } else {
            FeatureVerdict::Mismatch
        };
        features.push(FeatureCheck {
            name: doc.name,
            verdict,
            compared,
            agreeing,
            warmup_excluded: warm,
            max_rel_err: max_err,
            seed_definition_reproduced: reproduced,
        });
    }
    let matched = features.iter().filter(|c| c.verdict.matched()).count();
    let max_rel_err = features
        .iter()
        .filter(|c| c.verdict.matched())
        .map(|c| c.max_rel_err)
        .fold(0.0, f64::max);
    Ok(CheckReport {
        path: csv_path.display().to_string(),
        grid: opts.grid,
        tolerance: opts.tolerance,
        rows: csv.rows.len(),
        observed: seed.len(),
        resampled: kinds.iter().filter(|k| **k == RowKind::Resampled).count(),
        interpolated: kinds
            .iter()
            .filter(|k| **k == RowKind::Interpolated)
            .count(),
        features,
        matched,
        max_rel_err,
    })
}

/// `mcpwatch features export --csv <in> --out <out>`: writes a seed-format CSV (same header)
/// whose 82 features the engine computed from the input's raw columns (`hour_offset`,
/// `total_events` and the 14 aggregates; other columns are ignored and may be absent).
/// One output row per hour from the first to the last hour of the input; hours the input did
/// not observe (absent, or the seed's interpolated hours) are forward-filled like a live gap,
/// and off-the-hour rows (the seed's half-hour resampling) are skipped. `hour_offset` restarts
/// at 0. Returns the number of rows written.
pub fn export_csv(input: &Path, output: &Path) -> Result<usize, FeatureError> {
    export_csv_with(input, output, CheckGrid::Seed)
}

/// Width of one bucket when every CSV row is a bucket ([`CheckGrid::EveryRow`]): the seed CSV's
/// rows are 30 minutes apart.
pub const ROW_BUCKET_SECS: u64 = 1800;

/// Width of one bucket on the hourly grid ([`CheckGrid::Seed`]): the engine's default
/// `features.bucket_width_secs`.
pub const HOUR_BUCKET_SECS: u64 = 3600;

impl CheckGrid {
    /// The bucket width this grid's rows stand for: [`HOUR_BUCKET_SECS`] or [`ROW_BUCKET_SECS`].
    pub fn bucket_secs(self) -> u64 {
        match self {
            CheckGrid::Seed => HOUR_BUCKET_SECS,
            CheckGrid::EveryRow => ROW_BUCKET_SECS,
        }
    }
}

/// `features export` on either grid. [`CheckGrid::Seed`] is [`export_csv`] (hourly rows).
/// [`CheckGrid::EveryRow`] writes one output row per input row, in order, with the input's
/// `hour_offset`: row `i`'s features are what a [`ServiceState`] holds after the input's rows
/// `0..=i` were pushed as consecutive 30-minute buckets starting at
/// [`SEED_EPOCH_MS`]` + hour_offset` (missing raw values forward-filled, then 0). No row is
/// skipped, interpolated rows included: they are simply buckets.
pub fn export_csv_with(
    input: &Path,
    output: &Path,
    grid: CheckGrid,
) -> Result<usize, FeatureError> {
    match grid {
        CheckGrid::Seed => export_hourly(input, output),
        CheckGrid::EveryRow => export_rows(input, output),
    }
}

/// The raw rows of a seed-format CSV as consecutive buckets `(start_ms, row)`, forward-filled
/// like the engine does: what `export --grid rows` and the forecast evaluation feed the engine.
pub fn seed_csv_buckets(input: &Path) -> Result<Vec<(i64, RawRow)>, FeatureError> {
    let csv = read_seed_csv(input, false)?;
    let mut out: Vec<(i64, RawRow)> = Vec::with_capacity(csv.rows.len());
    for r in &csv.rows {
        let row = raw_row(r, out.last().map(|(_, p)| p));
        out.push((start_ms(r[0]), row));
    }
    Ok(out)
}

fn export_rows(input: &Path, output: &Path) -> Result<usize, FeatureError> {
    let csv = read_seed_csv(input, false)?;
    let config = FeaturesConfig {
        bucket_width_secs: ROW_BUCKET_SECS,
        ..FeaturesConfig::default()
    };
    let p = config.params();
    let out_path = output.display().to_string();
    let io = |source| FeatureError::Io {
        path: out_path.clone(),
        source,
    };
    let file = std::fs::File::create(output).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "{}", csv_header()).map_err(io)?;
    let mut state = ServiceState::with_params(&p);
    let mut line = String::with_capacity(2048);
    for r in &csv.rows {
        let row = raw_row(r, state.last_row().as_ref());
        state.push_row_p(start_ms(r[0]), &row, &p);
        let v = state.features().expect("a row was pushed");
        line.clear();
        use std::fmt::Write as _;
        let _ = write!(line, "{:?},{:?}", r[0], row.total_events);
        for x in v {
            let _ = write!(line, ",{x:?}");
        }
        writeln!(w, "{line}").map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(csv.rows.len())
}

/// The buckets of a seed-format CSV on either grid: [`seed_csv_hourly_buckets`] for
/// [`CheckGrid::Seed`], [`seed_csv_buckets`] for [`CheckGrid::EveryRow`]. Each is exactly what
/// `features export` on that grid feeds its engine.
pub fn seed_csv_grid_buckets(
    input: &Path,
    grid: CheckGrid,
) -> Result<Vec<(i64, RawRow)>, FeatureError> {
    match grid {
        CheckGrid::Seed => seed_csv_hourly_buckets(input),
        CheckGrid::EveryRow => seed_csv_buckets(input),
    }
}

/// The hourly observations of a seed-format CSV as consecutive 1-hour buckets `(start_ms, row)`,
/// one per hour from the first to the last observed hour: what `features export` (hourly grid)
/// and the hourly forecast evaluation feed the engine. Off-the-hour rows (the seed's half-hour
/// resampling) are skipped; hours not observed (absent, or on-the-hour rows the seed
/// interpolated) repeat the previous bucket, like a live gap; missing raw values are
/// forward-filled, then 0.
pub fn seed_csv_hourly_buckets(input: &Path) -> Result<Vec<(i64, RawRow)>, FeatureError> {
    let csv = read_seed_csv(input, false)?;
    let kinds = if csv.complete {
        classify(&csv)
    } else {
        classify_raw_only(&csv)
    };
    let observed: std::collections::BTreeMap<i64, &[f64; N_COLS]> = csv
        .rows
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| **k == RowKind::Observed)
        .map(|(r, _)| (r[0].round() as i64, r))
        .collect();
    let (Some(&first), Some(&last)) = (observed.keys().next(), observed.keys().next_back()) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<(i64, RawRow)> = Vec::with_capacity((last - first + 1) as usize);
    for h in first..=last {
        let prev = out.last().map(|(_, r)| r);
        let row = match observed.get(&h) {
            Some(r) => raw_row(r, prev),
            None => prev.copied().unwrap_or_default(),
        };
        out.push((start_ms(h as f64), row));
    }
    Ok(out)
}

fn export_hourly(input: &Path, output: &Path) -> Result<usize, FeatureError> {
    let buckets = seed_csv_hourly_buckets(input)?;
    let config = FeaturesConfig {
        bucket_width_secs: HOUR_BUCKET_SECS,
        ..FeaturesConfig::default()
    };
    let p = config.params();
    let out_path = output.display().to_string();
    let io = |source| FeatureError::Io {
        path: out_path.clone(),
        source,
    };
    let file = std::fs::File::create(output).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "{}", csv_header()).map_err(io)?;
    let first_ms = buckets.first().map_or(0, |(ms, _)| *ms);
    let mut state = ServiceState::with_params(&p);
    let mut line = String::with_capacity(2048);
    for (ms, row) in &buckets {
        state.push_row_p(*ms, row, &p);
        let v = state.features().expect("a row was pushed");
        line.clear();
        use std::fmt::Write as _;
        let hour = ((ms - first_ms) / 3_600_000) as f64;
        let _ = write!(line, "{:?},{:?}", hour, row.total_events);
        for x in v {
            let _ = write!(line, ",{x:?}");
        }
        writeln!(w, "{line}").map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(buckets.len())
}

/// Classification when only raw columns are present: no interpolation detection (too few
/// columns to tell interpolation from a genuinely linear stretch).
fn classify_raw_only(csv: &SeedCsv) -> Vec<RowKind> {
    csv.rows
        .iter()
        .map(|r| {
            if (r[0] - r[0].round()).abs() < 1e-9 {
                RowKind::Observed
            } else {
                RowKind::Resampled
            }
        })
        .collect()
}
