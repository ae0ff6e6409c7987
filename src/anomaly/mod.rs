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
//! In the daemon, [`stage`] runs the configured detector on every service's CPU, memory,
//! requests, errors and response time, one closed bucket at a time; anomalies go to
//! PostgreSQL ([`sink`], table `anomalies`), the hot cache, `/metrics` and the alerter
//! ([`crate::alert`]).
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
pub mod record;
pub mod residual;
pub mod sink;
pub mod stage;
pub mod tail;
pub mod zscore;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use bench::{run_bench, BenchReport};
pub use detector::{build_detector, Detector, DETECTOR_NAMES};
pub use nab::{run_nab_eval, NabReport};
pub use record::{BucketRecord, Metric, METRIC_NAMES};
pub use sink::{AnomalySink, AnomalyStore, AnomalyTable, SinkArgs};
pub use stage::{AnomalyFeed, AnomalyMetrics, FeedItem, FeedReceiver, StageArgs};

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

/// Typed configuration of the anomaly stage: the `[anomaly]` section of the daemon's config
/// (`MCPWATCH_ANOMALY__<KEY>`), with `ANOMALY_Z` honoured on top ([`AnomalyConfig::apply_env`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Run the streaming detection stage in the daemon.
    pub enabled: bool,
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
    /// Score at or above which an anomaly is `critical` rather than `warning`.
    pub critical_score: f64,
    /// Series checked per service, among `cpu`, `memory`, `requests` (the bucket's
    /// `total_events`), `errors`, `response_time` (mean response time of the bucket).
    pub metrics: Vec<String>,
    /// Services with detector state at most; a new service beyond it evicts the one seen
    /// least recently (counted in `mcpwatch_anomaly_series_evicted_total`).
    pub max_services: usize,
    /// A service with no closed bucket for this long loses its detector state.
    pub idle_evict_secs: u64,
    /// Closed-bucket records queued between the features stage and this one; when full the
    /// features stage drops (and counts) instead of waiting. A returning service's replayed
    /// history takes one slot, and is only queued while at least half of them are free.
    pub queue_records: usize,
    /// Anomalies kept per service for the cache (`anomalies` kind, hourly tier).
    pub recent_per_service: usize,
    /// Services exported with per-service `mcpwatch_anomaly_score` gauges: the ones with the
    /// highest current score (bounds the label cardinality to this × the metrics).
    pub metrics_max_services: usize,
    /// Anomalies per INSERT into PostgreSQL.
    pub store_batch_rows: usize,
    /// A partial batch of anomalies is written after this many milliseconds.
    pub store_flush_ms: u64,
    /// Anomalies queued for PostgreSQL; when full they are dropped and counted.
    pub store_queue_rows: usize,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            enabled: true,
            detector: "mcpwatch".to_string(),
            z_threshold: 3.0,
            window: 168,
            alert_threshold: None,
            critical_score: 0.8,
            metrics: METRIC_NAMES.iter().map(|m| m.to_string()).collect(),
            max_services: 5000,
            idle_evict_secs: 7 * 86_400,
            queue_records: 4096,
            recent_per_service: 20,
            metrics_max_services: 50,
            store_batch_rows: 500,
            store_flush_ms: 1000,
            store_queue_rows: 8192,
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
        cfg.apply_env(lookup)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies `ANOMALY_Z` (as `lookup` returns it) on top of this config.
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), AnomalyError> {
        if let Some(raw) = lookup(ENV_ANOMALY_Z) {
            self.z_threshold = raw.trim().parse().map_err(|_| {
                AnomalyError::InvalidConfig(format!("{ENV_ANOMALY_Z}={raw:?} is not a number"))
            })?;
        }
        Ok(())
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
        if !(0.0..=1.0).contains(&self.critical_score) {
            return Err(AnomalyError::InvalidConfig(format!(
                "critical_score must be within [0, 1], got {}",
                self.critical_score
            )));
        }
        for m in &self.metrics {
            if Metric::parse(m).is_none() {
                return Err(AnomalyError::InvalidConfig(format!(
                    "metrics: unknown metric {m:?} (known: {})",
                    METRIC_NAMES.join(", ")
                )));
            }
        }
        let positive = [
            ("max_services", self.max_services as u64),
            ("idle_evict_secs", self.idle_evict_secs),
            ("queue_records", self.queue_records as u64),
            ("store_batch_rows", self.store_batch_rows as u64),
            ("store_flush_ms", self.store_flush_ms),
            ("store_queue_rows", self.store_queue_rows as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(AnomalyError::InvalidConfig(format!(
                    "{key} must be at least 1"
                )));
            }
        }
        if self.recent_per_service > 1000 {
            return Err(AnomalyError::InvalidConfig(format!(
                "recent_per_service must be at most 1000, got {}",
                self.recent_per_service
            )));
        }
        Ok(())
    }

    /// The configured metrics, parsed (unknown names were rejected by [`Self::validate`]).
    pub fn metric_set(&self) -> Vec<Metric> {
        let mut v: Vec<Metric> = self
            .metrics
            .iter()
            .filter_map(|m| Metric::parse(m))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}
