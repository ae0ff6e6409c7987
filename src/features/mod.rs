//! Rolling per-service features: the stage after `ingest` and before the hot cache, the
//! durable store, the forecaster and the anomaly detectors.
//!
//! Every normalised [`Sample`](crate::sample::Sample) is folded into a time bucket of its
//! service (default one hour, as the seed model was trained). When a bucket closes — its end plus
//! the lateness bound has passed in event time — its raw aggregates are fixed and the service's
//! 82-feature model vector ([`names::FEATURE_NAMES`], the seed's order) is updated incrementally:
//! exact fixed-point running sums for moving averages and for the rolling variance (Σx, Σx²),
//! monotonic deques for rolling min/max, ring buffers for lags, and an exact trailing-window
//! rank count for the quantile family. Work per sample is O(1); work per closed bucket is O(1)
//! plus one vectorised pass over `history_buckets` 16-bit rank codes. Nothing reads the future:
//! a missing bucket is forward-filled from the previous one, then 0.
//!
//! Downstream stages react to [`ClosedBucket`]s returned by [`FeatureEngine::observe`]; the
//! forecaster reads [`FeatureEngine::window`] (the LSTM's 24 × 82 input). A service's whole state
//! is a few KiB and round-trips through [`ServiceState::encode`]/[`ServiceState::decode`] so it can
//! be snapshotted to Redis/PostgreSQL and rebuilt after eviction or a partition rebalance.
//!
//! Library entry points the CLI wires up: [`run_check`] (`mcpwatch features check`),
//! [`export_csv`] (`mcpwatch features export`) and [`run_bench`] (`mcpwatch bench features`).
//! The definition of every feature is written next to its code in [`defs`]; [`feature_table`]
//! lists them (name, definition, relation to the seed) for the README.

#![warn(missing_docs)]

pub mod bench;
pub mod bucket;
pub mod check;
pub mod defs;
pub mod engine;
pub mod names;
pub mod reference;
pub mod state;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use bench::{run_bench, run_bench_engine, run_bench_with, BenchOptions, BenchReport};
pub use bucket::{BucketExtras, RawRow};
pub use check::{
    export_csv, export_csv_with, run_check, run_check_with, seed_csv_buckets,
    seed_csv_grid_buckets, seed_csv_hourly_buckets, CheckGrid, CheckOptions, CheckReport,
    FeatureCheck, FeatureVerdict, HOUR_BUCKET_SECS, ROW_BUCKET_SECS,
};
pub use defs::{feature_table, FeatureDoc};
pub use engine::{
    Clock, ClosedBucket, EngineStats, EvictedService, FeatureEngine, ManualClock, SystemClock,
};
pub use names::{FEATURE_NAMES, N_FEATURES};
pub use state::{ServiceState, WINDOW_ROWS};

/// One model feature vector, in [`FEATURE_NAMES`] order.
pub type FeatureVector = [f64; N_FEATURES];

/// Errors of the feature stage.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// A configuration value is out of range; `key` is the `features.*` key to fix.
    #[error("invalid config `features.{key}`: {message}")]
    Config {
        /// The offending key under `features`.
        key: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A CSV file is not in the seed format.
    #[error("{path}:{line}: {message}")]
    Csv {
        /// The file involved.
        path: String,
        /// 1-based line number (1 is the header).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A state snapshot cannot be decoded (corrupt, truncated, or from an unknown version).
    #[error("feature state snapshot: {0}")]
    Snapshot(String),
    /// A snapshot was written under different bucket settings; rebuild the state from history.
    #[error("feature state snapshot was written with {what}={found}, config has {expected}; rebuild it from stored buckets")]
    SnapshotMismatch {
        /// Which setting differs.
        what: &'static str,
        /// The value in the current config.
        expected: i64,
        /// The value in the snapshot.
        found: i64,
    },
}

/// Settings of the feature stage (`[features]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturesConfig {
    /// Bucket width in seconds. The seed model was trained on hourly buckets (3600); the lag,
    /// moving-average and change windows are counted in buckets (`lag1` = one bucket back).
    pub bucket_width_secs: u64,
    /// How long after a bucket's end (in event time) late samples are still folded into it.
    /// Samples for buckets older than that are counted (`late_dropped`) and ignored.
    pub lateness_secs: u64,
    /// Length of the trailing window, in buckets, over which the quantile family
    /// (`*_quantile`, `is_high_load`, `is_low_load`, `load_category`) ranks the current bucket.
    /// 168 = one week of hourly buckets.
    pub history_buckets: usize,
    /// A service with no sample for this long (processing time) is evicted from memory by
    /// [`FeatureEngine::evict_idle`], which hands back its encoded state for snapshotting.
    pub idle_evict_secs: u64,
    /// Offset of local time from UTC in seconds, for the calendar features (`hour_of_day`,
    /// `is_business_hour`, `is_night`, ...). 0 = UTC.
    pub utc_offset_secs: i32,
    /// Samples stamped more than this ahead of the engine clock are dropped (and counted as
    /// `future_dropped`): one wrong clock would otherwise push the service's event-time
    /// watermark ahead and make every later sample "late".
    pub max_future_secs: u64,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig {
            bucket_width_secs: 3600,
            lateness_secs: 300,
            history_buckets: 168,
            idle_evict_secs: 6 * 3600,
            utc_offset_secs: 0,
            max_future_secs: 900,
        }
    }
}

impl FeaturesConfig {
    /// Checks every value; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), FeatureError> {
        let err = |key, message: String| Err(FeatureError::Config { key, message });
        if !(60..=7 * 86_400).contains(&self.bucket_width_secs) {
            return err(
                "bucket_width_secs",
                format!(
                    "{} is out of range; use 60..=604800 seconds (3600 = the hourly buckets the model was trained on)",
                    self.bucket_width_secs
                ),
            );
        }
        if self.lateness_secs > 24 * self.bucket_width_secs {
            return err(
                "lateness_secs",
                format!(
                    "{} keeps more than 24 buckets open per service; use at most {} (24 × bucket_width_secs)",
                    self.lateness_secs,
                    24 * self.bucket_width_secs
                ),
            );
        }
        if !(24..=8760).contains(&self.history_buckets) {
            return err(
                "history_buckets",
                format!(
                    "{} is out of range; use 24..=8760 buckets (168 = one week of hourly buckets)",
                    self.history_buckets
                ),
            );
        }
        let min_idle = self.bucket_width_secs + self.lateness_secs;
        if self.idle_evict_secs < min_idle {
            return err(
                "idle_evict_secs",
                format!(
                    "{} would evict services before their open bucket can close; use at least {} (bucket_width_secs + lateness_secs)",
                    self.idle_evict_secs, min_idle
                ),
            );
        }
        if self.utc_offset_secs.unsigned_abs() > 14 * 3600 {
            return err(
                "utc_offset_secs",
                format!(
                    "{} is not a time-zone offset; use -50400..=50400 seconds",
                    self.utc_offset_secs
                ),
            );
        }
        Ok(())
    }

    pub(crate) fn params(&self) -> Params {
        Params {
            width_ms: self.bucket_width_secs as i64 * 1000,
            lateness_ms: self.lateness_secs as i64 * 1000,
            history: self.history_buckets,
            utc_offset_secs: self.utc_offset_secs,
            max_future_ms: i64::try_from(self.max_future_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        }
    }
}

/// The config values the per-service state needs, in the units it uses. Held once by the
/// engine and passed by reference, so no service pays for a copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Params {
    pub width_ms: i64,
    pub lateness_ms: i64,
    pub history: usize,
    pub utc_offset_secs: i32,
    pub max_future_ms: i64,
}
