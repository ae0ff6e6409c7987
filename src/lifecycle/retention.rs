//! The retention job: creates partitions ahead, and retires whole daily partitions past their
//! table's retention — DETACH → archive → verify → DROP, never a row-by-row `DELETE` — plus
//! the emergency cleanup that retires the oldest partitions when the store passes its budget.
//!
//! Every step is idempotent and the PostgreSQL catalog is the job's state: a partition an
//! interrupted run detached is found again as a detached `<table>_pYYYYMMDD` table, and its
//! archive is found again by its manifest. So a rerun after a crash at any step finishes the
//! job without losing or duplicating a row, and a partition is never dropped before its archive
//! was read back. One replica at a time runs the job (a PostgreSQL advisory lock).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::archive::{Archive, Manifest};
use super::catalog::{day_bounds, list_partitions, schema_bytes, PartitionInfo};
use super::config::RetentionConfig;
use super::metrics::LifecycleMetrics;
use super::LifecycleError;
use crate::store::copy::day_of;
use crate::store::schema::PARTITIONED;
use crate::store::Partitions;

/// Advisory lock class of the retention job; the second key is `hashtext(current_schema())`,
/// so installs in different schemas of one database do not block each other.
pub(crate) const LOCK_CLASS: i32 = 0x6d63_7072; // "mcpr"

/// What one run did. Its `Display` is the summary line `mcpwatch retention run` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Another replica held the lock; nothing was done.
    pub skipped: bool,
    pub partitions_created: u64,
    pub dropped: u64,
    pub archived: u64,
    pub reattached: u64,
    pub rows_archived: u64,
    pub bytes_archived: u64,
    pub rows_dropped: u64,
    pub bytes_dropped: u64,
    /// Emergency cleanup ran (the store was past its budget threshold).
    pub emergency: bool,
    /// Schema size after the run (bytes).
    pub store_bytes: i64,
    pub attempts: u32,
}

impl RetentionReport {
    fn add(&mut self, r: &Retired) {
        self.dropped += 1;
        self.rows_dropped += r.rows;
        self.bytes_dropped += r.bytes.max(0) as u64;
        if let Some(m) = &r.manifest {
            self.archived += 1;
            self.rows_archived += m.rows;
            self.bytes_archived += m.bytes;
        }
    }
}

impl fmt::Display for RetentionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.skipped {
            return write!(f, "retention skipped=1 (another replica holds the lock)");
        }
        write!(
            f,
            "retention dropped={} archived={} rows_dropped={} rows_archived={} bytes_archived={} \
             bytes_freed={} reattached={} created={} emergency={} store_bytes={} attempts={}",
            self.dropped,
            self.archived,
            self.rows_dropped,
            self.rows_archived,
            self.bytes_archived,
            self.bytes_dropped,
            self.reattached,
            self.partitions_created,
            u8::from(self.emergency),
            self.store_bytes,
            self.attempts
        )
    }
}

/// One partition retired.
#[derive(Debug, Clone)]
pub struct Retired {
    pub table: String,
    pub day: i64,
    pub rows: u64,
    pub bytes: i64,
    /// None when archiving is off.
    pub manifest: Option<Manifest>,
}

/// Constructor arguments for [`Retention`].
pub struct RetentionArgs {
    pub pool: deadpool_postgres::Pool,
    pub config: RetentionConfig,
    /// The process's partition cache: told about drops so writers re-create a day if needed.
    pub partitions: Arc<Partitions>,
    pub partitions_ahead_days: u32,
    pub metrics: LifecycleMetrics,
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

/// The retention and budget jobs. Cheap to clone.
#[derive(Clone)]
pub struct Retention {
    /// Pool shared with the writers; a run holds one connection (which holds the lock).
    pool: deadpool_postgres::Pool,
    config: RetentionConfig,
    /// Shared with the writers; see [`RetentionArgs::partitions`].
    partitions: Arc<Partitions>,
    partitions_ahead_days: u32,
    archive: Option<Archive>,
    metrics: LifecycleMetrics,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

/// What a locked run does.
enum Job {
    /// The retention run, optionally stopped early (tests).
    Full(Option<StopAfter>),
    /// The budget check alone.
    Budget,
}

/// Which step a test wants a run to stop after (to simulate a crash there).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAfter {
    Detach,
    Archive,
}

impl Retention {
    pub fn new(args: RetentionArgs) -> Retention {
        let archive = args
            .config
            .archive
            .then(|| Archive::new(args.config.archive_dir.clone()));
        args.metrics
            .budget_bytes
            .set(args.config.budget_bytes as i64);
        Retention {
            pool: args.pool,
            config: args.config,
            partitions: args.partitions,
            partitions_ahead_days: args.partitions_ahead_days,
            archive,
            metrics: args.metrics,
            clock: args.clock,
        }
    }

    pub fn archive(&self) -> Option<&Archive> {
        self.archive.as_ref()
    }

    /// One run, retried with exponential backoff up to `max_attempts` times. Each attempt
    /// starts from the catalog, so a retry resumes wherever the failed attempt stopped.
    pub async fn run_with_retry(&self) -> Result<RetentionReport, LifecycleError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(self.config.retry_backoff_ms);
        let mut attempt = 1;
        let result = loop {
            match self.run_once().await {
                Ok(mut report) => {
                    report.attempts = attempt;
                    break Ok(report);
                }
                Err(e) if attempt < self.config.max_attempts => {
                    tracing::warn!(attempt, error = %e, "retention run failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                    attempt += 1;
                }
                Err(e) => break Err(e),
            }
        };
        let outcome = match &result {
            Ok(r) if r.skipped => "skipped",
            Ok(_) => "ok",
            Err(_) => "error",
        };
        self.metrics
            .run("retention", outcome, started.elapsed().as_secs_f64());
        result
    }

    /// One attempt: lock, create partitions ahead, retire expired partitions, re-attach
    /// partitions an interrupted run detached inside their retention, then check the budget.
    pub async fn run_once(&self) -> Result<RetentionReport, LifecycleError> {
        self.locked(Job::Full(None)).await
    }

    /// Like [`run_once`](Self::run_once) but stops after `stop` on the first expired
    /// partition: what a crash at that point leaves behind. For tests.
    #[doc(hidden)]
    pub async fn run_until(&self, stop: StopAfter) -> Result<RetentionReport, LifecycleError> {
        self.locked(Job::Full(Some(stop))).await
    }

    /// Only the budget check (and emergency cleanup when needed), under the lock.
    pub async fn check_budget(&self) -> Result<RetentionReport, LifecycleError> {
        let started = Instant::now();
        let result = self.locked(Job::Budget).await;
        let outcome = match &result {
            Ok(r) if r.skipped => "skipped",
            Ok(_) => "ok",
            Err(_) => "error",
        };
        self.metrics
            .run("budget", outcome, started.elapsed().as_secs_f64());
        result
    }

    /// Runs `job` on a connection holding the session advisory lock; skips when another
    /// session holds it. The lock is released before the connection goes back to the pool;
    /// if that fails, the connection is closed instead (which releases it too).
    async fn locked(&self, job: Job) -> Result<RetentionReport, LifecycleError> {
        let client = self.pool.get().await?;
        let got: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))",
                &[&LOCK_CLASS],
            )
            .await?
            .get(0);
        if !got {
            return Ok(RetentionReport {
                skipped: true,
                ..RetentionReport::default()
            });
        }
        let result = match job {
            Job::Full(stop) => self.work(&client, stop).await,
            Job::Budget => {
                let mut report = RetentionReport::default();
                match self.set_lock_timeout(&client).await {
                    Ok(()) => self.budget(&client, &mut report).await.map(|_| report),
                    Err(e) => Err(e),
                }
            }
        };
        let unlocked = client
            .batch_execute(&format!(
                "SELECT pg_advisory_unlock({LOCK_CLASS}, hashtext(current_schema())); RESET lock_timeout"
            ))
            .await;
        if unlocked.is_err() {
            // closing the session releases its locks
            drop(deadpool_postgres::Object::take(client));
        }
        result
    }

    async fn set_lock_timeout(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<(), LifecycleError> {
        client
            .batch_execute(&format!(
                "SET lock_timeout = {}",
                self.config.lock_timeout_ms
            ))
            .await?;
        Ok(())
    }

    async fn work(
        &self,
        client: &tokio_postgres::Client,
        stop: Option<StopAfter>,
    ) -> Result<RetentionReport, LifecycleError> {
        let mut report = RetentionReport::default();
        let now = (self.clock)();
        self.set_lock_timeout(client).await?;
        let created = self
            .partitions
            .ensure_ahead(client, now, self.partitions_ahead_days)
            .await?;
        report.partitions_created = created as u64;
        self.metrics.partitions_created.inc_by(created as u64);

        let today = day_of(now);
        for part in list_partitions(client).await? {
            let Some(days) = self.config.days_for(&part.table) else {
                continue;
            };
            // the partition's whole day is older than `days` days
            let expired = part.day + i64::from(days) <= today;
            if expired {
                let retired = self.retire(client, &part, stop).await?;
                match retired {
                    Some(r) => report.add(&r),
                    None => return Ok(report), // stopped early (tests)
                }
            } else if !part.attached {
                reattach(client, &part).await?;
                report.reattached += 1;
                self.metrics
                    .partitions_reattached
                    .get_or_create(&LifecycleMetrics::table(&part.table))
                    .inc();
                tracing::warn!(partition = %part.name, "re-attached a partition an interrupted run had detached");
            }
        }
        self.budget(client, &mut report).await?;
        Ok(report)
    }

    /// Measures the schema; past the threshold, retires partitions oldest first (archiving
    /// each first) until it is back under, and says so loudly.
    async fn budget(
        &self,
        client: &tokio_postgres::Client,
        report: &mut RetentionReport,
    ) -> Result<(), LifecycleError> {
        let mut size = schema_bytes(client).await?;
        self.metrics.store_bytes.set(size);
        report.store_bytes = size;
        if self.config.budget_bytes == 0 {
            self.metrics.over_budget.set(0);
            return Ok(());
        }
        let threshold = (self.config.budget_bytes as f64 * self.config.emergency_ratio) as i64;
        if size <= threshold {
            self.metrics.over_budget.set(0);
            return Ok(());
        }
        self.metrics.over_budget.set(1);
        self.metrics.emergency_cleanups.inc();
        report.emergency = true;
        tracing::error!(
            store_bytes = size,
            budget_bytes = self.config.budget_bytes,
            threshold_bytes = threshold,
            "store past its storage budget threshold: emergency cleanup of the oldest partitions"
        );
        let today = day_of((self.clock)());
        let keep_from = today - i64::from(self.config.emergency_keep_days) + 1;
        let mut candidates: Vec<PartitionInfo> = list_partitions(client)
            .await?
            .into_iter()
            .filter(|p| self.config.days_for(&p.table).is_some() && p.day < keep_from)
            .collect();
        // oldest day first; within a day the largest first
        candidates.sort_by(|a, b| a.day.cmp(&b.day).then(b.bytes.cmp(&a.bytes)));
        for part in candidates {
            if size <= threshold {
                break;
            }
            if let Some(r) = self.retire(client, &part, None).await? {
                report.add(&r);
            }
            size = schema_bytes(client).await?;
            self.metrics.store_bytes.set(size);
        }
        report.store_bytes = size;
        if size > threshold {
            tracing::error!(
                store_bytes = size,
                threshold_bytes = threshold,
                keep_days = self.config.emergency_keep_days,
                "still past the storage budget threshold after dropping every partition older than retention.emergency_keep_days"
            );
        } else {
            self.metrics.over_budget.set(0);
        }
        Ok(())
    }

    /// DETACH → archive → verify → DROP for one partition, resuming at whichever step an
    /// earlier run reached. Returns None when `stop` cut it short.
    pub async fn retire(
        &self,
        client: &tokio_postgres::Client,
        part: &PartitionInfo,
        stop: Option<StopAfter>,
    ) -> Result<Option<Retired>, LifecycleError> {
        if part.attached {
            detach(client, part).await?;
        }
        if stop == Some(StopAfter::Detach) {
            return Ok(None);
        }
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM {}", part.name), &[])
            .await?
            .get(0);
        let rows = rows as u64;
        let bytes: i64 = client
            .query_one(
                "SELECT pg_total_relation_size($1::text::regclass)",
                &[&part.name],
            )
            .await?
            .get(0);
        let label = LifecycleMetrics::table(&part.table);
        let manifest = match &self.archive {
            None => None,
            Some(archive) => {
                // an earlier run may have archived it already: keep that archive only if it
                // verifies and holds exactly this partition's rows
                let existing = match archive.read_manifest(&part.table, part.day) {
                    Ok(Some(m)) if m.rows == rows && archive.verify(&m).is_ok() => Some(m),
                    _ => None,
                };
                let manifest = match existing {
                    Some(m) => m,
                    None => {
                        let m = archive.write_partition(client, part, rows).await?;
                        self.metrics.partitions_archived.get_or_create(&label).inc();
                        self.metrics
                            .rows_archived
                            .get_or_create(&label)
                            .inc_by(m.rows);
                        self.metrics
                            .bytes_archived
                            .get_or_create(&label)
                            .inc_by(m.bytes);
                        m
                    }
                };
                // the verification that gates the drop, on the files as they are now
                let read = archive.verify(&manifest)?;
                if read != rows {
                    return Err(LifecycleError::Verify {
                        path: archive.day_dir(&part.table, part.day),
                        problem: format!("archive holds {read} rows, partition {rows}"),
                    });
                }
                Some(manifest)
            }
        };
        if stop == Some(StopAfter::Archive) {
            return Ok(None);
        }
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", part.name))
            .await?;
        if let Some(parent) = PARTITIONED.iter().find(|t| **t == part.table) {
            self.partitions.forget(parent, part.day);
        }
        self.metrics.partitions_dropped.get_or_create(&label).inc();
        self.metrics.rows_dropped.get_or_create(&label).inc_by(rows);
        self.metrics
            .bytes_dropped
            .get_or_create(&label)
            .inc_by(bytes.max(0) as u64);
        tracing::info!(
            partition = %part.name,
            rows,
            archived = manifest.is_some(),
            "retired partition"
        );
        Ok(Some(Retired {
            table: part.table.clone(),
            day: part.day,
            rows,
            bytes,
            manifest,
        }))
    }
}

/// Takes a partition out of its table, so no query or write sees it while it is archived.
pub async fn detach(
    client: &tokio_postgres::Client,
    part: &PartitionInfo,
) -> Result<(), LifecycleError> {
    client
        .batch_execute(&format!(
            "ALTER TABLE {} DETACH PARTITION {}",
            part.table, part.name
        ))
        .await?;
    Ok(())
}

/// Puts a detached partition back (found inside its retention after an interrupted run).
async fn reattach(
    client: &tokio_postgres::Client,
    part: &PartitionInfo,
) -> Result<(), LifecycleError> {
    let (from, to) = day_bounds(part.day)?;
    client
        .batch_execute(&format!(
            "ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ('{from}') TO ('{to}')",
            part.table, part.name
        ))
        .await?;
    Ok(())
}
