//! `mcpwatch eval forecast --csv <seed-format CSV>`: a shipped model evaluated exactly as the
//! daemon runs it.
//!
//! The CSV's raw columns become buckets on one of two grids ([`CheckGrid`]), the same ones
//! `mcpwatch features export` writes for training:
//! - [`CheckGrid::EveryRow`] (`--grid rows`): every CSV row is one 30-minute bucket (1800 s), the
//!   grid `lstm_total_events_v2` was trained on;
//! - [`CheckGrid::Seed`] (`--grid hours`): the seed's hourly observations, one 1-hour bucket per
//!   hour (3600 s, the daemon's default width; unobserved hours repeat the previous one), the grid
//!   `lstm_total_events_h1` was trained on.
//!
//! For each origin `t`, buckets `0..t` are replayed into a [`FeatureEngine`] of that width (the
//! daemon's own incremental features), [`ForecastInput::from_engine`] gathers the window, and a
//! [`Forecaster`] (router, metadata scaling, ONNX Runtime in Rust, inverse scaling) forecasts
//! rows `t..t+23`. The CSV's own feature columns are never read.
//!
//! Protocol (the seed's chronological 70/10/20 split of the grid's rows; 1439 half-hour rows:
//! train 0–1006, validation 1007–1150, test 1151–1438; 720 hourly rows: train 0–503, validation
//! 504–575, test 576–719): rolling origins every 24 rows over the split, `t = start + 24k` while
//! `t + 23` is inside it (12 test origins on rows, 6 on hours), horizon 24; MAE over all origins
//! × steps in original units of `total_events`. Seasonal naive predicts row `r` with the row one
//! day earlier (`r − 48` on rows, `r − 24` on hours); the baseline is the daemon's fallback
//! predictor on the same input.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::config::{DEFAULT_MODEL, HALF_HOUR_MODEL};
use super::{
    baseline_forecast, season_buckets, ForecastConfig, ForecastContext, ForecastError,
    ForecastInput, ForecastMetrics, Forecaster, ModelMetadata,
};
use crate::features::{
    seed_csv_grid_buckets, CheckGrid, FeatureEngine, FeaturesConfig, ManualClock,
};

/// Which rows the origins are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalSplit {
    /// Rows `int(0.7 n)..int(0.8 n)` (model selection).
    Validation,
    /// Rows `int(0.8 n)..n` (the reported figure).
    Test,
}

/// Options of [`run_eval`].
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The seed-format CSV (`hour_offset,total_events,…`); only its raw columns are read.
    pub csv: PathBuf,
    /// The forecaster's settings (`model`, `ort_library`, `batch_size` matter).
    pub config: ForecastConfig,
    /// Which split to score.
    pub split: EvalSplit,
    /// How CSV rows become buckets (and so the bucket width the model must have been trained on).
    pub grid: CheckGrid,
}

/// The model and grid `eval forecast` uses when one or both are not given:
/// - neither: `lstm_total_events_v2` on 30-minute rows (the must-show evaluation);
/// - only the grid: the model shipped for it (`…_h1` for hours, `…_v2` for rows);
/// - only the model: the grid of its `row_interval_minutes` (60 → hours, 30 or absent → rows).
pub fn resolve_model_and_grid(
    model: Option<PathBuf>,
    grid: Option<CheckGrid>,
) -> Result<(PathBuf, CheckGrid), ForecastError> {
    let shipped = |g: CheckGrid| {
        PathBuf::from(match g {
            CheckGrid::Seed => DEFAULT_MODEL,
            CheckGrid::EveryRow => HALF_HOUR_MODEL,
        })
    };
    match (model, grid) {
        (Some(m), Some(g)) => Ok((m, g)),
        (None, Some(g)) => Ok((shipped(g), g)),
        (None, None) => Ok((shipped(CheckGrid::EveryRow), CheckGrid::EveryRow)),
        (Some(m), None) => {
            let meta = ModelMetadata::load(&m)?;
            let grid = match meta.row_interval_minutes.map(|v| u64::from(v) * 60) {
                Some(w) if w == CheckGrid::Seed.bucket_secs() => CheckGrid::Seed,
                None => CheckGrid::EveryRow,
                Some(w) if w == CheckGrid::EveryRow.bucket_secs() => CheckGrid::EveryRow,
                Some(w) => {
                    return Err(ForecastError::Metadata {
                        path: m,
                        field: "row_interval_minutes".into(),
                        problem: format!(
                            "is {} minutes; the seed CSV has grids of 60 minutes (`--grid hours`) and 30 minutes (`--grid rows`)",
                            w / 60
                        ),
                        fix: "evaluate a model trained on one of those grids".into(),
                    })
                }
            };
            Ok((m, grid))
        }
    }
}

/// The figures of one origin.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginScore {
    /// First forecast row.
    pub origin: usize,
    /// MAE of the model over the 24 steps.
    pub mae_model: f64,
    /// MAE of seasonal naive.
    pub mae_seasonal_naive: f64,
    /// MAE of the baseline predictor.
    pub mae_baseline: f64,
}

/// Result of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// The CSV.
    pub csv: String,
    /// Data rows (buckets on the grid).
    pub rows: usize,
    /// Width of one bucket (one row), seconds.
    pub bucket_secs: u64,
    /// `[train_end, val_end)` split points.
    pub split_rows: (usize, usize),
    /// The split scored.
    pub split: EvalSplit,
    /// Model name and metadata file.
    pub model: String,
    /// The ONNX Runtime library used.
    pub runtime: String,
    /// Version reported by every forecast.
    pub model_version: String,
    /// Steps per origin.
    pub horizon: usize,
    /// Per-origin figures.
    pub origins: Vec<OriginScore>,
    /// MAE per step (0 = the first forecast bucket).
    pub mae_by_step: Vec<f64>,
    /// Overall MAE of the model.
    pub mae_model: f64,
    /// Overall MAE of seasonal naive.
    pub mae_seasonal_naive: f64,
    /// Overall MAE of the baseline predictor.
    pub mae_baseline: f64,
}

impl EvalReport {
    /// `mae_model / mae_seasonal_naive`.
    pub fn rel_mae(&self) -> f64 {
        self.mae_model / self.mae_seasonal_naive
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = self.split_rows;
        writeln!(
            f,
            "eval forecast: {} ({} rows, one row = one {} s bucket; seasonal naive = {} rows back)",
            self.csv,
            self.rows,
            self.bucket_secs,
            season_buckets(self.bucket_secs)
        )?;
        writeln!(
            f,
            "split: train 0-{} validation {}-{} test {}-{}; scoring {} origins every {} rows",
            a - 1,
            a,
            b - 1,
            b,
            self.rows - 1,
            match self.split {
                EvalSplit::Validation => "validation",
                EvalSplit::Test => "test",
            },
            self.horizon
        )?;
        writeln!(f, "model: {} (runtime {})", self.model, self.runtime)?;
        writeln!(f, "model_version reported: {}", self.model_version)?;
        writeln!(f, "features: computed by the Rust feature engine from the CSV's raw columns (its feature columns are not read)")?;
        for o in &self.origins {
            writeln!(
                f,
                "  t={}: mae_model={:.3} mae_seasonal_naive={:.3} mae_baseline={:.3}",
                o.origin, o.mae_model, o.mae_seasonal_naive, o.mae_baseline
            )?;
        }
        let steps: Vec<String> = self.mae_by_step.iter().map(|v| format!("{v:.1}")).collect();
        writeln!(f, "mae by step: {}", steps.join(" "))?;
        write!(
            f,
            "horizon={} origins={} mae_model={:.4} mae_seasonal_naive={:.4} mae_baseline={:.4} rel_mae={:.4}",
            self.horizon,
            self.origins.len(),
            self.mae_model,
            self.mae_seasonal_naive,
            self.mae_baseline,
            self.rel_mae()
        )
    }
}

/// The chronological split points of `rows` rows: `(int(0.7 rows), int(0.8 rows))`.
pub fn split_bounds(rows: usize) -> (usize, usize) {
    (rows * 7 / 10, rows * 8 / 10)
}

/// Rolling origins every `horizon` rows inside `[start, end)`.
pub fn protocol_origins(start: usize, end: usize, horizon: usize) -> Vec<usize> {
    (start..)
        .step_by(horizon)
        .take_while(|t| t + horizon <= end)
        .collect()
}

/// Runs the evaluation. Fails (rather than scoring the baseline as "the model") when the LSTM
/// cannot run: no runtime library, or a model that does not fit the engine.
pub fn run_eval(opts: &EvalOptions) -> Result<EvalReport, ForecastError> {
    let width = opts.grid.bucket_secs();
    let buckets = seed_csv_grid_buckets(&opts.csv, opts.grid)?;
    let rows = buckets.len();
    let forecaster = Forecaster::new(opts.config.clone(), width, ForecastMetrics::default())?;
    if let Some((reason, message)) = forecaster.lstm_status() {
        return Err(ForecastError::Inference(format!(
            "the LSTM cannot run ({reason}), so there is no model to evaluate: {message}{}",
            if reason == super::FallbackReason::ModelInvalid {
                "\n  (eval forecast: `--grid hours` evaluates on 3600 s buckets, `--grid rows` on 1800 s)"
            } else {
                ""
            }
        )));
    }
    let meta = forecaster.model().expect("status checked").clone();
    let horizon = meta.horizon;
    let season = season_buckets(width);
    let (train_end, val_end) = split_bounds(rows);
    let (start, end) = match opts.split {
        EvalSplit::Validation => (train_end, val_end),
        EvalSplit::Test => (val_end, rows),
    };
    let origins = protocol_origins(start, end, horizon);
    if origins.is_empty() || origins[0] < season.max(super::WINDOW_ROWS) {
        return Err(ForecastError::Inference(format!(
            "{}: {rows} rows leave no origin with a full window and a day of history in the split",
            opts.csv.display()
        )));
    }

    // Feed the engine progressively and take each origin's input as the daemon would.
    let config = FeaturesConfig {
        bucket_width_secs: width,
        ..FeaturesConfig::default()
    };
    let clock = Arc::new(ManualClock::new(buckets[rows - 1].0));
    let mut engine = FeatureEngine::new(config, clock)?;
    let id = "eval";
    let mut inputs = Vec::with_capacity(origins.len());
    for &t in &origins {
        engine.replay_buckets(id, &buckets[..t]);
        let input = ForecastInput::from_engine(&engine, id, ForecastContext::default())
            .expect("rows were replayed");
        debug_assert_eq!(input.rows as usize, t);
        inputs.push(input);
    }
    let outputs = forecaster.forecast_blocking(&inputs);

    let truth = |r: usize| buckets[r].1.total_events;
    let mut scores = Vec::with_capacity(origins.len());
    let mut by_step = vec![0.0; horizon];
    let (mut sum_m, mut sum_n, mut sum_b) = (0.0, 0.0, 0.0);
    let mut versions: Vec<String> = Vec::new();
    for ((&t, input), out) in origins.iter().zip(&inputs).zip(&outputs) {
        if !versions.contains(&out.model_version) {
            versions.push(out.model_version.clone());
        }
        let base = baseline_forecast(&input.history, season, horizon);
        let (mut m, mut n, mut b) = (0.0, 0.0, 0.0);
        for h in 0..horizon {
            let y = truth(t + h);
            let em = (out.values[h] - y).abs();
            by_step[h] += em;
            m += em;
            n += (truth(t + h - season) - y).abs();
            b += (base[h] - y).abs();
        }
        sum_m += m;
        sum_n += n;
        sum_b += b;
        let hz = horizon as f64;
        scores.push(OriginScore {
            origin: t,
            mae_model: m / hz,
            mae_seasonal_naive: n / hz,
            mae_baseline: b / hz,
        });
    }
    let points = (origins.len() * horizon) as f64;
    let runtime = super::OnnxRuntime::load(opts.config.ort_library.as_deref())
        .map(|r| r.library().display().to_string())
        .unwrap_or_default();
    Ok(EvalReport {
        csv: opts.csv.display().to_string(),
        rows,
        bucket_secs: width,
        split_rows: (train_end, val_end),
        split: opts.split,
        model: format!("{} ({})", meta.name, meta.path.display()),
        runtime,
        model_version: versions.join(","),
        horizon,
        origins: scores,
        mae_by_step: by_step.iter().map(|s| s / origins.len() as f64).collect(),
        mae_model: sum_m / points,
        mae_seasonal_naive: sum_n / points,
        mae_baseline: sum_b / points,
    })
}
