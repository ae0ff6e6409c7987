//! Streaming anomaly detection. Detection sits after the feature stage and before alerts: the
//! feature stage feeds every detector each closed bucket (and, for raw-sample series such as
//! response time, each raw sample) of one service metric, one value at a time and in time order;
//! the detector answers at once with an `anomaly_score` in `[0, 1]` computed only from what it has
//! seen so far, and the alert stage turns scores at or above its threshold into de-duplicated
//! alerts. Every detector keeps a small, fixed amount of state per series
//! ([`Detector::state_bytes`]), so the daemon can run one per service per metric.
//!
//! Two detectors are meant for production: `zscore`, the seed's rule (|z| against the last
//! `window` = 168 buckets, flagged at `ANOMALY_Z` = 3, score 0.5 there), and `mcpwatch`, the
//! default ([`mcpwatch`]): forecast residuals, an anomaly likelihood, a time-of-day envelope,
//! level/quietness drops and range novelty, each calibrated on the series' own history by a
//! peaks-over-threshold tail model, fused and debounced to one score per incident (score 0.5 =
//! a one-in-100 000 event; 1 = a breakout of the recent range). On the Numenta Anomaly Benchmark
//! it scores 76.7 / 70.2 / 81.3 (standard / low FP / low FN) against 19.6 / 0 / 31.8 for `zscore`.
//!
//! `windowedGaussian`, `random` and `null` re-implement NAB's reference detectors; they exist to
//! validate the benchmark scorer ([`nab_score`]) that `mcpwatch eval nab` runs through
//! [`run_nab_eval`], which reproduces NAB's published windowedGaussian result to 0.01.

pub mod baselines;
pub mod bench;
pub mod detector;
pub mod drops;
pub mod envelope;
pub mod likelihood;
pub mod mcpwatch;
pub mod nab;
pub mod nab_score;
pub mod novelty;
pub mod residual;
pub mod tail;
pub mod zscore;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use bench::{run_bench, BenchReport};
pub use detector::{build_detector, Detector, DETECTOR_NAMES};
pub use nab::{run_nab_eval, NabReport};

/// Environment variable overriding [`AnomalyConfig::z_threshold`].
pub const ENV_ANOMALY_Z: &str = "ANOMALY_Z";

/// Errors of the anomaly stage and of the benchmark tooling.
#[derive(Debug, thiserror::Error)]
pub enum AnomalyError {
    #[error("invalid anomaly config: {0}")]
    InvalidConfig(String),
    #[error("unknown detector `{name}` (known: {known})")]
    UnknownDetector { name: String, known: String },
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad json in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("benchmark corpus error: {0}")]
    Corpus(String),
}

impl AnomalyError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        AnomalyError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Typed configuration of the anomaly stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Detector run on every series (one of [`DETECTOR_NAMES`]).
    pub detector: String,
    /// |z| at which the `zscore` detector flags a point (`ANOMALY_Z`); its score is 0.5 there.
    pub z_threshold: f64,
    /// Number of past buckets the `zscore` detector compares against (168 = one week of hours).
    pub window: usize,
    /// Score at or above which the alert stage raises an alert; `None` uses the detector's own
    /// [`Detector::alert_threshold`] (0.32 for `mcpwatch`, its alarm level and NAB's optimum;
    /// 0.5, i.e. |z| = `ANOMALY_Z`, for `zscore`).
    pub alert_threshold: Option<f64>,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            detector: "mcpwatch".to_string(),
            z_threshold: 3.0,
            window: 168,
            alert_threshold: None,
        }
    }
}

impl AnomalyConfig {
    /// Largest accepted `window` (keeps per-series memory bounded to a few KB).
    pub const MAX_WINDOW: usize = 512;

    /// Defaults with `ANOMALY_Z` applied when it is set.
    pub fn from_env() -> Result<Self, AnomalyError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Defaults with the variables that `lookup` returns applied (`ANOMALY_Z`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AnomalyError> {
        let mut cfg = AnomalyConfig::default();
        if let Some(raw) = lookup(ENV_ANOMALY_Z) {
            cfg.z_threshold = raw.trim().parse().map_err(|_| {
                AnomalyError::InvalidConfig(format!("{ENV_ANOMALY_Z}={raw:?} is not a number"))
            })?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every field; the daemon refuses to start on an invalid config.
    pub fn validate(&self) -> Result<(), AnomalyError> {
        if !DETECTOR_NAMES.contains(&self.detector.as_str()) {
            return Err(AnomalyError::UnknownDetector {
                name: self.detector.clone(),
                known: DETECTOR_NAMES.join(", "),
            });
        }
        if !(self.z_threshold.is_finite() && self.z_threshold > 0.0) {
            return Err(AnomalyError::InvalidConfig(format!(
                "z_threshold must be a positive number, got {}",
                self.z_threshold
            )));
        }
        if !(2..=Self::MAX_WINDOW).contains(&self.window) {
            return Err(AnomalyError::InvalidConfig(format!(
                "window must be within 2..={}, got {}",
                Self::MAX_WINDOW,
                self.window
            )));
        }
        if let Some(t) = self.alert_threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(AnomalyError::InvalidConfig(format!(
                    "alert_threshold must be within [0, 1], got {t}"
                )));
            }
        }
        Ok(())
    }
}
