//! Aggregates of the raw samples per service at 5 min, 15 min, 1 h and 24 h, for trends and
//! dashboards (`samples_5m` … `samples_24h`, `sql/0005_lifecycle.sql`).
//!
//! Incremental: a watermark per resolution (`aggregate_watermarks.done_until`) says up to where
//! windows are computed. A run computes the windows that closed since (a window closes
//! `aggregate_grace_secs` after its end), plus the last `aggregate_recheck_secs` worth of
//! whole windows again, so late samples are folded in; rows are upserted on
//! (service_id, bucket) and the watermark advances in the same transaction, so a rerun — or a
//! crash between two chunks — rewrites the same rows and never double counts. Each resolution
//! is computed from the raw samples (a p95 cannot be rolled up from p95s).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::config::RetentionConfig;
use super::metrics::{LifecycleMetrics, ResolutionLabel};
use super::LifecycleError;
use crate::store::Partitions;

/// One aggregate resolution and its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    pub name: &'static str,
    pub table: &'static str,
    pub secs: i64,
}

pub const RESOLUTIONS: [Resolution; 4] = [
    Resolution {
        name: "5m",
        table: "samples_5m",
        secs: 300,
    },
    Resolution {
        name: "15m",
        table: "samples_15m",
        secs: 900,
    },
    Resolution {
        name: "1h",
        table: "samples_1h",
        secs: 3600,
    },
    Resolution {
        name: "24h",
        table: "samples_24h",
        secs: 86_400,
    },
];

/// The aggregate columns after (service_id, bucket), in table order.
pub const AGGREGATE_COLUMNS: &[&str] = &[
    "samples",
    "cpu_avg",
    "cpu_min",
    "cpu_max",
    "cpu_p95",
    "memory_avg",
    "memory_min",
    "memory_max",
    "memory_p95",
    "response_time_ms_avg",
    "response_time_ms_min",
    "response_time_ms_max",
    "response_time_ms_p95",
    "requests_sum",
    "requests_avg",
    "requests_min",
    "requests_max",
    "errors_sum",
    "errors_avg",
    "errors_min",
    "errors_max",
    "degraded_samples",
    "down_samples",
];

/// Raw samples covered by one transaction (a multiple of every resolution).
const CHUNK_SECS: i64 = 86_400;
/// Base of the per-resolution advisory lock classes (second key: the schema), so two replicas
/// never compute the same chunk.
const LOCK_BASE: i32 = 0x6d63_6100; // "mca\0"

/// The expressions computing [`AGGREGATE_COLUMNS`] from `samples`.
fn aggregate_expressions() -> String {
    let mut e = vec!["count(*)".to_string()];
    for c in ["cpu", "memory", "response_time_ms"] {
        e.push(format!(
            "avg({c}), min({c}), max({c}), percentile_cont(0.95) WITHIN GROUP (ORDER BY {c})"
        ));
    }
    for c in ["requests", "errors"] {
        e.push(format!("sum({c}), avg({c}), min({c}), max({c})"));
    }
    e.push("count(*) FILTER (WHERE status = 1), count(*) FILTER (WHERE status = 2)".into());
    e.join(", ")
}

/// The upsert of every window of `res` that starts in [$1, $2).
pub fn upsert_sql(res: &Resolution) -> String {
    let cols = AGGREGATE_COLUMNS.join(", ");
    let updates = AGGREGATE_COLUMNS
        .iter()
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} (service_id, bucket, {cols}) \
         SELECT service_id, date_bin('{secs} seconds'::interval, ts, TIMESTAMPTZ '1970-01-01 00:00:00+00'), {exprs} \
         FROM samples WHERE ts >= $1 AND ts < $2 GROUP BY 1, 2 \
         ON CONFLICT (service_id, bucket) DO UPDATE SET {updates}",
        table = res.table,
        secs = res.secs,
        exprs = aggregate_expressions(),
    )
}

/// What one aggregate run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregateReport {
    /// Rows upserted per resolution, in [`RESOLUTIONS`] order.
    pub rows: [u64; 4],
    /// Watermark per resolution after the run (epoch seconds; 0 = never ran).
    pub done_until: [i64; 4],
}

/// Constructor arguments for [`Aggregator`].
pub struct AggregatorArgs {
    pub pool: deadpool_postgres::Pool,
    pub config: RetentionConfig,
    /// The process's partition cache (the aggregate tables are partitioned by day too).
    pub partitions: Arc<Partitions>,
    pub metrics: LifecycleMetrics,
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

/// The aggregate job. Cheap to clone.
#[derive(Clone)]
pub struct Aggregator {
    /// Shared pool; a run holds one connection.
    pool: deadpool_postgres::Pool,
    config: RetentionConfig,
    /// Shared with the writers and the retention job.
    partitions: Arc<Partitions>,
    metrics: LifecycleMetrics,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

fn ts(secs: i64) -> Result<DateTime<Utc>, LifecycleError> {
    DateTime::<Utc>::from_timestamp(secs, 0).ok_or(LifecycleError::BadDay(secs / 86_400))
}

impl Aggregator {
    pub fn new(args: AggregatorArgs) -> Aggregator {
        Aggregator {
            pool: args.pool,
            config: args.config,
            partitions: args.partitions,
            metrics: args.metrics,
            clock: args.clock,
        }
    }

    /// Brings every resolution up to date.
    pub async fn run(&self) -> Result<AggregateReport, LifecycleError> {
        let started = Instant::now();
        let result = self.run_inner().await;
        self.metrics.run(
            "aggregates",
            if result.is_ok() { "ok" } else { "error" },
            started.elapsed().as_secs_f64(),
        );
        result
    }

    async fn run_inner(&self) -> Result<AggregateReport, LifecycleError> {
        let mut client = self.pool.get().await?;
        let now_s = (self.clock)().div_euclid(1000);
        let mut report = AggregateReport::default();
        for (i, res) in RESOLUTIONS.iter().enumerate() {
            let (rows, done) = self.resolution(&mut client, i, res, now_s).await?;
            report.rows[i] = rows;
            report.done_until[i] = done;
            let label = ResolutionLabel {
                resolution: res.name,
            };
            self.metrics
                .aggregate_rows
                .get_or_create(&label)
                .inc_by(rows);
            self.metrics
                .aggregate_windows_until
                .get_or_create(&label)
                .set(done);
        }
        Ok(report)
    }

    /// Computes the closed windows of one resolution; returns (rows upserted, watermark).
    async fn resolution(
        &self,
        client: &mut deadpool_postgres::Object,
        index: usize,
        res: &Resolution,
        now_s: i64,
    ) -> Result<(u64, i64), LifecycleError> {
        let w = res.secs;
        let closed_until = (now_s - self.config.aggregate_grace_secs as i64).div_euclid(w) * w;
        let stored: Option<DateTime<Utc>> = client
            .query_opt(
                "SELECT done_until FROM aggregate_watermarks WHERE resolution = $1",
                &[&res.name],
            )
            .await?
            .map(|r| r.get(0));
        let from = match stored {
            Some(done) => {
                let done = done.timestamp().div_euclid(w) * w;
                let recheck = (self.config.aggregate_recheck_secs as i64 / w) * w;
                done - recheck
            }
            None => {
                (now_s - i64::from(self.config.aggregate_backfill_days) * 86_400).div_euclid(w) * w
            }
        };
        let mut done = stored.map(|d| d.timestamp()).unwrap_or(0);
        let mut rows = 0;
        let mut start = from;
        let sql = upsert_sql(res);
        while start < closed_until {
            let end = (start + CHUNK_SECS).min(closed_until);
            self.partitions
                .ensure(
                    client,
                    res.table,
                    start.div_euclid(86_400)..=(end - 1).div_euclid(86_400),
                )
                .await?;
            let tx = client.transaction().await?;
            let mine: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_xact_lock($1, hashtext(current_schema()))",
                    &[&(LOCK_BASE + index as i32)],
                )
                .await?
                .get(0);
            if !mine {
                // another replica is computing this resolution right now
                return Ok((rows, done));
            }
            rows += tx.execute(&sql, &[&ts(start)?, &ts(end)?]).await?;
            tx.execute(
                "INSERT INTO aggregate_watermarks (resolution, done_until) VALUES ($1, $2) \
                 ON CONFLICT (resolution) DO UPDATE \
                 SET done_until = GREATEST(aggregate_watermarks.done_until, EXCLUDED.done_until), \
                     updated_at = now()",
                &[&res.name, &ts(end)?],
            )
            .await?;
            tx.commit().await?;
            done = done.max(end);
            start = end;
        }
        Ok((rows, done))
    }
}
