//! Anomalies in PostgreSQL: the `anomalies` table (`sql/0003_anomalies.sql`, partitioned by
//! day like `samples`), written in batches by a task of its own so detection never waits on
//! the database, and read back by `GET /v1/anomalies`.
//!
//! A batch is one `INSERT … SELECT FROM unnest(…)` (one statement per batch, never per row);
//! the natural key (service, time, metric, source) makes a replayed anomaly update the row
//! instead of duplicating it. A failed batch is retried with back-off, then dropped and
//! counted: anomalies are derived data, and the queue must stay bounded while PostgreSQL is
//! away.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alert::{Anomaly, AnomalySource, Severity};
use crate::anomaly::stage::AnomalyMetrics;
use crate::store::copy::day_of;
use crate::store::{Partitions, StoreError};

/// Attempts per batch before its rows are dropped.
const ATTEMPTS: u32 = 3;

/// The detection stage's handle: queues anomalies without waiting.
#[derive(Clone)]
pub struct AnomalySink {
    /// Sending half of the writer's bounded queue (`None`: storing is off).
    tx: Option<mpsc::Sender<Anomaly>>,
    metrics: AnomalyMetrics,
}

impl AnomalySink {
    /// A sink that stores nothing.
    pub fn disabled() -> AnomalySink {
        AnomalySink {
            tx: None,
            metrics: AnomalyMetrics::default(),
        }
    }

    /// Queues one anomaly; `false` when it was dropped (queue full; counted) or storing is off.
    pub fn offer(&self, a: Anomaly) -> bool {
        let Some(tx) = &self.tx else {
            return false;
        };
        if tx.try_send(a).is_ok() {
            true
        } else {
            self.metrics.store_dropped.inc();
            false
        }
    }
}

/// Constructor arguments for [`AnomalyStore::start`].
pub struct SinkArgs {
    pub pool: deadpool_postgres::Pool,
    /// Shared with the ingest writers: which daily partitions exist.
    pub partitions: Arc<Partitions>,
    pub batch_rows: usize,
    pub flush_ms: u64,
    pub queue_rows: usize,
    pub metrics: AnomalyMetrics,
    pub shutdown: CancellationToken,
}

/// The writer task and its producer handle.
pub struct AnomalyStore {
    /// Handed out to the detection stage.
    sink: AnomalySink,
    /// The writer, owned so [`AnomalyStore::close`] can wait for its last batch.
    task: JoinHandle<()>,
}

impl AnomalyStore {
    pub fn start(args: SinkArgs) -> AnomalyStore {
        let (tx, rx) = mpsc::channel(args.queue_rows.max(1));
        let sink = AnomalySink {
            tx: Some(tx),
            metrics: args.metrics.clone(),
        };
        let task = tokio::spawn(writer(args, rx));
        AnomalyStore { sink, task }
    }

    pub fn sink(&self) -> AnomalySink {
        self.sink.clone()
    }

    /// Waits for the writer: it stops once every sink handle is dropped, after writing what
    /// was queued (at shutdown without waiting for fuller batches or between retries).
    pub async fn close(self) {
        drop(self.sink);
        let _ = self.task.await;
    }
}

async fn writer(args: SinkArgs, mut rx: mpsc::Receiver<Anomaly>) {
    let flush = Duration::from_millis(args.flush_ms);
    let mut batch: Vec<Anomaly> = Vec::with_capacity(args.batch_rows);
    // ends when every sink handle is gone and the queue is empty
    while rx.recv_many(&mut batch, args.batch_rows).await > 0 {
        // gather a fuller batch for up to `flush` (not once shutting down)
        let deadline = tokio::time::Instant::now() + flush;
        while batch.len() < args.batch_rows && !args.shutdown.is_cancelled() {
            let room = args.batch_rows - batch.len();
            tokio::select! {
                n = rx.recv_many(&mut batch, room) => if n == 0 { break },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = args.shutdown.cancelled() => break,
            }
        }
        write_with_retry(&args, &mut batch).await;
    }
}

async fn write_with_retry(args: &SinkArgs, batch: &mut Vec<Anomaly>) {
    if batch.is_empty() {
        return;
    }
    for attempt in 1..=ATTEMPTS {
        match insert(&args.pool, &args.partitions, batch).await {
            Ok(n) => {
                args.metrics.stored.inc_by(n);
                batch.clear();
                return;
            }
            Err(e) => {
                args.metrics.store_errors.inc();
                tracing::warn!(error = %e, rows = batch.len(), attempt, "could not store anomalies");
                if attempt < ATTEMPTS && !args.shutdown.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    }
    args.metrics.store_dropped.inc_by(batch.len() as u64);
    batch.clear();
}

fn ts(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Writes `rows` (creating their days' partitions first); returns the rows written.
pub async fn insert(
    pool: &deadpool_postgres::Pool,
    partitions: &Partitions,
    rows: &[Anomaly],
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let client = pool.get().await?;
    partitions
        .ensure(&client, "anomalies", rows.iter().map(|a| day_of(a.ts_ms)))
        .await?;
    let service: Vec<&str> = rows.iter().map(|a| a.service_id.as_str()).collect();
    let time: Vec<DateTime<Utc>> = rows.iter().map(|a| ts(a.ts_ms)).collect();
    let metric: Vec<&str> = rows.iter().map(|a| a.metric.as_str()).collect();
    let source: Vec<&str> = rows.iter().map(|a| a.source.as_str()).collect();
    let score: Vec<f64> = rows.iter().map(|a| a.score).collect();
    let value: Vec<f64> = rows.iter().map(|a| a.value).collect();
    let expected: Vec<Option<f64>> = rows.iter().map(|a| a.expected).collect();
    let severity: Vec<&str> = rows.iter().map(|a| a.severity.as_str()).collect();
    let detector: Vec<&str> = rows.iter().map(|a| a.detector.as_str()).collect();
    let message: Vec<Option<&str>> = rows.iter().map(|a| a.message.as_deref()).collect();
    // DISTINCT ON: one row per key even if a batch holds the same point twice
    let n = client
        .execute(
            "INSERT INTO anomalies \
               (service_id, ts, metric, source, score, value, expected, severity, detector, message) \
             SELECT DISTINCT ON (s, t, m, src) s, t, m, src, sc, v, e, sev, d, msg \
             FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::float8[], \
                         $6::float8[], $7::float8[], $8::text[], $9::text[], $10::text[]) \
                  AS u(s, t, m, src, sc, v, e, sev, d, msg) \
             ORDER BY s, t, m, src, sc DESC \
             ON CONFLICT (service_id, ts, metric, source) DO UPDATE SET \
               score = EXCLUDED.score, value = EXCLUDED.value, expected = EXCLUDED.expected, \
               severity = EXCLUDED.severity, detector = EXCLUDED.detector, \
               message = EXCLUDED.message, detected_at = now()",
            &[
                &service, &time, &metric, &source, &score, &value, &expected, &severity,
                &detector, &message,
            ],
        )
        .await?;
    Ok(n)
}

/// A read of stored anomalies (what `/v1/anomalies` asks).
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyQuery {
    pub service: Option<String>,
    /// Points at or after this time (epoch ms).
    pub since_ms: i64,
    pub min_score: f64,
    pub limit: usize,
}

impl AnomalyQuery {
    /// Whether `a` answers the query.
    pub fn matches(&self, a: &Anomaly) -> bool {
        self.service.as_deref().is_none_or(|s| s == a.service_id)
            && a.ts_ms >= self.since_ms
            && a.score >= self.min_score
    }
}

/// Stored anomalies answering `q`, newest first.
pub async fn query(
    pool: &deadpool_postgres::Pool,
    q: &AnomalyQuery,
) -> Result<Vec<Anomaly>, StoreError> {
    let client = pool.get().await?;
    let since = ts(q.since_ms);
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT service_id, ts, metric, source, score, value, expected, severity, detector, message \
             FROM anomalies \
             WHERE ts >= $1 AND score >= $2 AND ($3::text IS NULL OR service_id = $3) \
             ORDER BY ts DESC, service_id, metric LIMIT $4",
            &[&since, &q.min_score, &q.service, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Anomaly {
            service_id: r.get(0),
            ts_ms: r.get::<_, DateTime<Utc>>(1).timestamp_millis(),
            metric: r.get(2),
            source: AnomalySource::parse(r.get(3)).unwrap_or(AnomalySource::Stream),
            score: r.get(4),
            value: r.get(5),
            expected: r.get(6),
            severity: Severity::parse(r.get(7)).unwrap_or(Severity::Warning),
            detector: r.get(8),
            message: r.get(9),
        })
        .collect())
}
