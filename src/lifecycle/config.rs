//! Settings of the data lifecycle (`[retention]`): how long each partitioned table keeps its
//! daily partitions, where expired ones are archived, the storage budget, and the cadence of
//! the retention and aggregate jobs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::store::is_identifier;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// The daemon runs the retention, budget and aggregate jobs (`mcpwatch retention run`
    /// works either way).
    pub enabled: bool,
    /// Seconds between two retention runs.
    pub interval_secs: u64,
    /// Days each partitioned table keeps, by table name. A partition is dropped once its whole
    /// day is older than that. Tables not listed are never dropped by retention.
    pub tables: BTreeMap<String, u32>,
    /// Archive each partition as Arrow IPC (LZ4) with a manifest before dropping it. Off means
    /// expired rows are deleted for good.
    pub archive: bool,
    /// Root of the archive: `<dir>/<table>/day=YYYY-MM-DD/part-00000.arrow` + `manifest.json`.
    pub archive_dir: PathBuf,
    /// Storage budget of the store's schema in bytes (tables, indexes, TOAST); 0 = no budget.
    pub budget_bytes: u64,
    /// Share of the budget that triggers emergency cleanup (oldest partitions first).
    pub emergency_ratio: f64,
    /// Days (today included) that emergency cleanup never drops.
    pub emergency_keep_days: u32,
    /// Seconds between two storage budget checks.
    pub budget_check_secs: u64,
    /// Attempts of a failing retention run before it waits for the next interval.
    pub max_attempts: u32,
    /// First wait between attempts, doubled each time.
    pub retry_backoff_ms: u64,
    /// How long a DETACH or DROP may wait for a table lock before the attempt fails (and is
    /// retried), so retention never queues ingest behind it for long.
    pub lock_timeout_ms: u64,
    /// Seconds between two aggregate runs.
    pub aggregate_interval_secs: u64,
    /// A window is aggregated once it ended this many seconds ago (late samples within it count).
    pub aggregate_grace_secs: u64,
    /// Windows that closed within this many seconds are recomputed on every run, so samples
    /// that arrive late (a consumer catching up after a restart) are folded in. Whole windows
    /// only: 3600 rechecks twelve 5 min windows, one 1 h window and no 24 h window.
    pub aggregate_recheck_secs: u64,
    /// The first aggregate run starts this many days back.
    pub aggregate_backfill_days: u32,
    /// Rows `GET /v1/query` returns at most.
    pub query_max_rows: usize,
    /// Seconds a query over the archive may run.
    pub query_timeout_secs: u64,
}

/// The default retention in days for every partitioned table mcpwatch ships.
pub fn default_tables() -> BTreeMap<String, u32> {
    [
        ("samples", 7),
        ("samples_5m", 30),
        ("samples_15m", 30),
        ("samples_1h", 30),
        ("samples_24h", 30),
        ("anomalies", 30),
        ("forecasts", 30),
        ("plans", 30),
    ]
    .into_iter()
    .map(|(t, d)| (t.to_string(), d))
    .collect()
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            enabled: true,
            interval_secs: 6 * 3600,
            tables: default_tables(),
            archive: true,
            archive_dir: PathBuf::from("data/archive"),
            budget_bytes: 50 * 1024 * 1024 * 1024,
            emergency_ratio: 0.9,
            emergency_keep_days: 2,
            budget_check_secs: 300,
            max_attempts: 5,
            retry_backoff_ms: 2000,
            lock_timeout_ms: 5000,
            aggregate_interval_secs: 60,
            aggregate_grace_secs: 120,
            aggregate_recheck_secs: 3600,
            aggregate_backfill_days: 7,
            query_max_rows: 10_000,
            query_timeout_secs: 30,
        }
    }
}

impl RetentionConfig {
    /// Days `table` keeps, if retention applies to it.
    pub fn days_for(&self, table: &str) -> Option<u32> {
        self.tables.get(table).copied()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (table, days) in &self.tables {
            if !is_identifier(table) {
                return Err(ConfigError::invalid(
                    &format!("retention.tables.{table}"),
                    format!("{table:?} is not a plain SQL table name"),
                    "use the table's name, e.g. samples = 7",
                ));
            }
            if *days == 0 {
                return Err(ConfigError::invalid(
                    &format!("retention.tables.{table}"),
                    "0 days would drop today's partition",
                    "keep at least 1 day, or remove the table from the map to keep it forever",
                ));
            }
        }
        let positive = [
            ("retention.interval_secs", self.interval_secs),
            ("retention.budget_check_secs", self.budget_check_secs),
            (
                "retention.aggregate_interval_secs",
                self.aggregate_interval_secs,
            ),
            ("retention.query_timeout_secs", self.query_timeout_secs),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(ConfigError::invalid(
                    key,
                    "is 0",
                    "use a positive number of seconds",
                ));
            }
        }
        if !(self.emergency_ratio > 0.0 && self.emergency_ratio <= 1.0) {
            return Err(ConfigError::invalid(
                "retention.emergency_ratio",
                format!("{} is outside (0, 1]", self.emergency_ratio),
                "use e.g. 0.9 (clean up past 90 % of budget_bytes)",
            ));
        }
        if self.emergency_keep_days == 0 {
            return Err(ConfigError::invalid(
                "retention.emergency_keep_days",
                "0 would let emergency cleanup drop the partition being written",
                "use 1 or more",
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid(
                "retention.max_attempts",
                "is 0",
                "use e.g. 5",
            ));
        }
        if self.archive && self.archive_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "retention.archive_dir",
                "is empty while retention.archive is on",
                "set a directory, e.g. \"data/archive\", or archive = false",
            ));
        }
        if self.query_max_rows == 0 {
            return Err(ConfigError::invalid(
                "retention.query_max_rows",
                "is 0",
                "use e.g. 10000",
            ));
        }
        Ok(())
    }
}
