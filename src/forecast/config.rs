//! The `[forecast]` section of the config: which model, where ONNX Runtime lives, how the
//! continuous loop batches, and the router's table.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::router::{RouteKey, Router};
use super::ForecastError;

/// Settings of the forecaster (`[forecast]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForecastConfig {
    /// The model's metadata JSON (written by `training/train.py`). The ONNX graph is the file
    /// its `onnx.file` names, in the same directory. Relative paths are taken from the working
    /// directory.
    pub model: PathBuf,
    /// The ONNX Runtime shared library (e.g. `lib/libonnxruntime.so.1.31.1`, fetched by
    /// `make ort`). Empty: `$ORT_DYLIB_PATH`, then next to the executable, then `./lib`.
    /// A path given here must exist (no silent search elsewhere).
    pub ort_library: Option<PathBuf>,
    /// Services per inference call (the ONNX batch dimension).
    pub batch_size: usize,
    /// Seconds between two forecasts of every active service (the continuous loop's period).
    pub cadence_secs: u64,
    /// Inference workers: each owns one ONNX session and runs on the blocking thread pool.
    pub workers: usize,
    /// ONNX Runtime intra-op threads per session (1: the workers are the parallelism).
    pub intra_threads: usize,
    /// Closed buckets a service needs before the LSTM is trusted with it; younger services get
    /// the baseline (`fallback_reason = "short_history"`). 48 = the model's 24-row window plus
    /// the 24 rows its longest lag reads, i.e. no feature of the window is a warm-up fill.
    pub min_history_buckets: u64,
    /// Router table: `<service_type>_<time_slot>_<runtime_env>` → model version, each part a
    /// value (`web|api|db`, `peak|normal|low|weekend`, `prod|dev`) or `any`; `default` catches
    /// the rest. The most specific match wins. A version whose name contains `lstm` runs the
    /// LSTM, any other the baseline (e.g. `any_any_dev = "baseline_dev_v1"`).
    pub routes: BTreeMap<String, String>,
}

/// The route every context takes by default: the default model's name.
pub const DEFAULT_ROUTE: &str = "lstm_total_events_h1";

/// The model for the default 1-hour buckets (`features.bucket_width_secs = 3600`): trained on
/// `mcpwatch features export` (the hourly grid), see README.
pub const DEFAULT_MODEL: &str = "models/lstm_total_events_h1.json";

/// The route of [`HALF_HOUR_MODEL`].
pub const HALF_HOUR_ROUTE: &str = "lstm_total_events_v2";

/// The model for 30-minute buckets (`features.bucket_width_secs = 1800`, the demo): trained on
/// `mcpwatch features export --grid rows`, see README.
pub const HALF_HOUR_MODEL: &str = "models/lstm_total_events_v2.json";

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            model: PathBuf::from(DEFAULT_MODEL),
            ort_library: None,
            batch_size: 256,
            cadence_secs: 300,
            workers: 2,
            intra_threads: 1,
            min_history_buckets: 48,
            routes: BTreeMap::from([("default".to_string(), DEFAULT_ROUTE.to_string())]),
        }
    }
}

impl ForecastConfig {
    /// Checks every value; the error names the `forecast.*` key and the fix.
    pub fn validate(&self) -> Result<(), ForecastError> {
        let bad = |key: &str, problem: String, fix: &str| {
            Err(ForecastError::Config {
                key: format!("forecast.{key}"),
                problem,
                fix: fix.to_string(),
            })
        };
        if self.model.as_os_str().is_empty() {
            return bad(
                "model",
                "is empty".into(),
                "set forecast.model = \"models/lstm_total_events_h1.json\" (the metadata JSON next to the .onnx file)",
            );
        }
        if self.model.extension().and_then(|e| e.to_str()) != Some("json") {
            return bad(
                "model",
                format!("`{}` is not a .json metadata file", self.model.display()),
                "point forecast.model at the model's metadata JSON (e.g. models/lstm_total_events_h1.json); the .onnx file is found through it",
            );
        }
        if let Some(p) = &self.ort_library {
            if p.as_os_str().is_empty() {
                return bad(
                    "ort_library",
                    "is an empty path".into(),
                    "remove the key to search $ORT_DYLIB_PATH, next to the executable and ./lib, or give the library's path",
                );
            }
        }
        if !(1..=65_536).contains(&self.batch_size) {
            return bad(
                "batch_size",
                format!("{} is out of range", self.batch_size),
                "use 1..=65536 (256 keeps one call near 5 ms on one core)",
            );
        }
        if !(1..=86_400).contains(&self.cadence_secs) {
            return bad(
                "cadence_secs",
                format!("{} is out of range", self.cadence_secs),
                "use 1..=86400 seconds (300 = every five minutes)",
            );
        }
        if !(1..=64).contains(&self.workers) {
            return bad(
                "workers",
                format!("{} is out of range", self.workers),
                "use 1..=64 (about one per core; each holds one ONNX session)",
            );
        }
        if !(1..=64).contains(&self.intra_threads) {
            return bad(
                "intra_threads",
                format!("{} is out of range", self.intra_threads),
                "use 1..=64 (1 is best when workers ≈ cores)",
            );
        }
        if self.min_history_buckets > 100_000 {
            return bad(
                "min_history_buckets",
                format!("{} is out of range", self.min_history_buckets),
                "use 0..=100000 (48 = window plus longest lag)",
            );
        }
        for (key, version) in &self.routes {
            if let Err(problem) = RouteKey::parse(key) {
                return bad(
                    &format!("routes.{key}"),
                    problem,
                    "write keys as <service_type>_<time_slot>_<runtime_env> with web|api|db, peak|normal|low|weekend, prod|dev or `any` in each place, or `default`",
                );
            }
            if version.trim().is_empty() || version.chars().any(char::is_whitespace) {
                return bad(
                    &format!("routes.{key}"),
                    format!("model version `{version}` is empty or has whitespace"),
                    "name a model version such as \"lstm_web_peak_v2\" (contains `lstm`: the LSTM runs) or \"web_normal_v1\" (the baseline runs)",
                );
            }
        }
        if !self.routes.contains_key("default") {
            return bad(
                "routes.default",
                "is missing, so some contexts would have no model".into(),
                "add default = \"lstm_total_events_h1\" under [forecast.routes]",
            );
        }
        Ok(())
    }

    /// The router built from [`ForecastConfig::routes`] (validate first).
    pub fn router(&self) -> Result<Router, ForecastError> {
        self.validate()?;
        Router::from_table(&self.routes)
    }
}
