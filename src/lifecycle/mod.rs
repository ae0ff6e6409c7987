//! The data lifecycle: what happens to history after the [`store`](crate::store) wrote it.
//!
//! Sits beside the write path (ingest → store) on a cadence: the [aggregate job](aggregates)
//! rolls raw samples up into 5 min … 24 h tables as windows close; the
//! [retention job](retention) creates daily partitions ahead and retires expired ones whole —
//! detached, [archived](archive) as LZ4 Arrow IPC with a manifest, verified, dropped — and the
//! budget check retires the oldest early when the store passes its storage budget. The
//! archive stays queryable with DataFusion SQL ([`query`]: `mcpwatch query`, `GET /v1/query`).

pub mod aggregates;
pub mod archive;
pub mod catalog;
pub mod config;
pub mod metrics;
pub mod query;
pub mod retention;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use aggregates::{AggregateReport, Aggregator, AggregatorArgs, RESOLUTIONS};
pub use archive::{Archive, Manifest};
pub use config::RetentionConfig;
pub use metrics::LifecycleMetrics;
pub use retention::{Retention, RetentionArgs, RetentionReport};

/// Everything that can go wrong in a lifecycle job or an archive query.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no PostgreSQL connection available: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("{0}")]
    DataFusion(Box<datafusion::error::DataFusionError>),
    #[error("manifest {path}: {problem}")]
    Manifest { path: PathBuf, problem: String },
    #[error("archive verification failed for {path}: {problem}; the partition is kept")]
    Verify { path: PathBuf, problem: String },
    #[error("day {0} is outside the supported time range")]
    BadDay(i64),
    #[error("the query ran longer than {0} s")]
    QueryTimeout(u64),
    #[error("query: {0}")]
    Query(String),
}

impl From<datafusion::error::DataFusionError> for LifecycleError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        LifecycleError::DataFusion(Box::new(e))
    }
}

impl LifecycleError {
    pub fn io(path: &Path, source: std::io::Error) -> LifecycleError {
        LifecycleError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The lifecycle on the embedded store: every `aggregate_interval_secs` today's and
/// yesterday's segments are compacted into one file per day (so queries open few files), and
/// every `interval_secs` the days past each table's retention (`samples`, and the tables the
/// daemon keeps there: `anomalies`, `plans`) are compacted, verified and moved into the
/// archive (or deleted when `archive = false`).
pub struct LocalJobs {
    pub store: crate::store::LocalStore,
    pub config: RetentionConfig,
    pub shutdown: CancellationToken,
    pub clock: std::sync::Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl LocalJobs {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut compact =
                tokio::time::interval(Duration::from_secs(self.config.aggregate_interval_secs));
            let mut retention =
                tokio::time::interval(Duration::from_secs(self.config.interval_secs));
            compact.reset();
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => break,
                    _ = compact.tick() => {
                        let today = crate::store::copy::day_of((self.clock)());
                        for day in [today - 1, today] {
                            if let Err(e) = self.store.compact_day(day).await {
                                tracing::warn!(error = %e, day, "compaction failed; the next run retries");
                            }
                            for table in self.store.tables() {
                                if let Err(e) = table.compact_day(day).await {
                                    tracing::warn!(error = %e, table = table.name(), day, "compaction failed; the next run retries");
                                }
                            }
                        }
                    }
                    _ = retention.tick() => {
                        let today = crate::store::copy::day_of((self.clock)());
                        let archive = self.config.archive.then_some(self.config.archive_dir.as_path());
                        if let Some(days) = self.config.days_for("samples") {
                            match self.store.retire_before(today, days, archive).await {
                                Ok(retired) => tracing::info!(days = retired.len(), "embedded store retention"),
                                Err(e) => tracing::error!(error = %e, "embedded store retention failed; the next interval retries"),
                            }
                        }
                        for table in self.store.tables() {
                            let Some(days) = self.config.days_for(table.name()) else { continue };
                            match table.retire_before(today, days, archive.map(Path::to_path_buf)).await {
                                Ok(retired) => tracing::info!(table = table.name(), days = retired.len(), "embedded store retention"),
                                Err(e) => tracing::error!(error = %e, table = table.name(), "embedded store retention failed; the next interval retries"),
                            }
                        }
                    }
                }
            }
        })
    }
}

/// The daemon's lifecycle tasks: aggregates, the budget check and retention, each on its own
/// cadence, until `shutdown`. A run in progress is finished, not cut, at shutdown (so the
/// advisory lock is always released on its connection).
pub struct Jobs {
    pub retention: Retention,
    pub aggregator: Aggregator,
    pub config: RetentionConfig,
    pub shutdown: CancellationToken,
}

impl Jobs {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let every = |s: u64| {
                let mut t = tokio::time::interval(Duration::from_secs(s));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            };
            let mut aggregate = every(self.config.aggregate_interval_secs);
            let mut budget = every(self.config.budget_check_secs);
            let mut retention = every(self.config.interval_secs);
            // the first ticks fire at once: let ingest start before the first runs
            aggregate.reset();
            budget.reset();
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => break,
                    _ = aggregate.tick() => {
                        if let Err(e) = self.aggregator.run().await {
                            tracing::warn!(error = %e, "aggregate run failed; the next run retries");
                        }
                    }
                    _ = budget.tick() => {
                        if let Err(e) = self.retention.check_budget().await {
                            tracing::warn!(error = %e, "storage budget check failed");
                        }
                    }
                    _ = retention.tick() => {
                        match self.retention.run_with_retry().await {
                            Ok(report) => tracing::info!(%report, "retention run"),
                            Err(e) => tracing::error!(error = %e, "retention run failed after every attempt; the next interval retries"),
                        }
                    }
                }
            }
        })
    }
}
