//! Stored anomalies: the `anomalies` table ([`AnomalyTable`]) in PostgreSQL
//! (`sql/0003_anomalies.sql`, partitioned by day like `samples`) or in the embedded store
//! (Arrow files in the same daily layout), written in batches by a task of its own so
//! detection never waits on the store, and read back by `GET /v1/anomalies`.
//!
//! In PostgreSQL a batch is one `INSERT … SELECT FROM unnest(…)` (one statement per batch,
//! never per row); the natural key (service, time, metric, source) makes a replayed anomaly
//! update the row instead of duplicating it. In the embedded store a batch is one appended
//! segment per day; a replay appends the point again, and reads keep the last one written
//! for each key (as the update would). A failed batch is retried with back-off, then dropped
//! and counted: anomalies are derived data, and the queue must stay bounded while the store
//! is away.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alert::{Anomaly, AnomalySource, Severity};
use crate::anomaly::stage::AnomalyMetrics;
use crate::store::copy::day_of;
use crate::store::{LocalStore, LocalTable, Partitions, StoreError};

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

/// Where anomalies are kept.
#[derive(Clone)]
pub enum AnomalyTable {
    /// PostgreSQL's `anomalies` table.
    Postgres {
        pool: deadpool_postgres::Pool,
        /// Shared with the ingest writers: which daily partitions exist.
        partitions: Arc<Partitions>,
    },
    /// The embedded store's `anomalies` table.
    Local(LocalTable),
}

impl AnomalyTable {
    /// The embedded store's `anomalies` table.
    pub fn local(store: &LocalStore) -> Result<AnomalyTable, StoreError> {
        Ok(AnomalyTable::Local(
            store.table("anomalies", Arc::new(anomalies_schema()))?,
        ))
    }

    /// Writes `rows`; returns the rows written.
    pub async fn insert(&self, rows: &[Anomaly]) -> Result<u64, StoreError> {
        match self {
            AnomalyTable::Postgres { pool, partitions } => insert(pool, partitions, rows).await,
            AnomalyTable::Local(table) => insert_local(table, rows).await,
        }
    }

    /// Stored anomalies answering `q`, newest first.
    pub async fn query(&self, q: &AnomalyQuery) -> Result<Vec<Anomaly>, StoreError> {
        match self {
            AnomalyTable::Postgres { pool, .. } => query(pool, q).await,
            AnomalyTable::Local(table) => query_local(table, q).await,
        }
    }
}

/// Constructor arguments for [`AnomalyStore::start`].
pub struct SinkArgs {
    pub table: AnomalyTable,
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
        match args.table.insert(batch).await {
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

/// The Arrow schema of the embedded `anomalies` table: the PostgreSQL table's columns, with
/// the types its archive has (so one DataFusion table spans both).
pub fn anomalies_schema() -> Schema {
    let f = |n: &str, t: DataType| Field::new(n, t, true);
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Schema::new(vec![
        f("service_id", DataType::Utf8),
        f("ts", ts()),
        f("metric", DataType::Utf8),
        f("source", DataType::Utf8),
        f("score", DataType::Float64),
        f("value", DataType::Float64),
        f("expected", DataType::Float64),
        f("severity", DataType::Utf8),
        f("detector", DataType::Utf8),
        f("message", DataType::Utf8),
        f("detected_at", ts()),
    ])
}

/// The natural key: one stored point per (service, time, metric, source).
fn key(a: &Anomaly) -> (String, i64, String, &'static str) {
    (
        a.service_id.clone(),
        a.ts_ms,
        a.metric.clone(),
        a.source.as_str(),
    )
}

fn anomalies_batch(
    schema: &SchemaRef,
    rows: &[&Anomaly],
    detected_ms: i64,
) -> Result<RecordBatch, StoreError> {
    let mut texts: [StringBuilder; 6] = Default::default();
    let mut floats: [Float64Builder; 3] = Default::default();
    let mut ts = TimestampMicrosecondBuilder::new();
    let mut detected = TimestampMicrosecondBuilder::new();
    for a in rows {
        let [service, metric, source, severity, detector, message] = &mut texts;
        service.append_value(&a.service_id);
        metric.append_value(&a.metric);
        source.append_value(a.source.as_str());
        severity.append_value(a.severity.as_str());
        detector.append_value(&a.detector);
        message.append_option(a.message.as_deref());
        ts.append_value(a.ts_ms * 1000);
        detected.append_value(detected_ms * 1000);
        let [score, value, expected] = &mut floats;
        score.append_value(a.score);
        value.append_value(a.value);
        expected.append_option(a.expected);
    }
    let [service, metric, source, severity, detector, message] = &mut texts;
    let [score, value, expected] = &mut floats;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(service.finish()),
        Arc::new(ts.finish().with_timezone("UTC")),
        Arc::new(metric.finish()),
        Arc::new(source.finish()),
        Arc::new(score.finish()),
        Arc::new(value.finish()),
        Arc::new(expected.finish()),
        Arc::new(severity.finish()),
        Arc::new(detector.finish()),
        Arc::new(message.finish()),
        Arc::new(detected.finish().with_timezone("UTC")),
    ];
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| StoreError::Local(format!("anomalies batch: {e}")))
}

/// Appends `rows` to the embedded table, one segment per day; a point twice in the batch is
/// written once, with its highest score (as PostgreSQL's `DISTINCT ON`).
async fn insert_local(table: &LocalTable, rows: &[Anomaly]) -> Result<u64, StoreError> {
    let mut unique: HashMap<(String, i64, String, &'static str), &Anomaly> = HashMap::new();
    for a in rows {
        let e = unique.entry(key(a)).or_insert(a);
        if a.score > e.score {
            *e = a;
        }
    }
    let mut by_day: std::collections::BTreeMap<i64, Vec<&Anomaly>> = Default::default();
    for a in unique.into_values() {
        by_day.entry(day_of(a.ts_ms)).or_default().push(a);
    }
    let detected_ms = Utc::now().timestamp_millis();
    let mut n = 0;
    for (day, mut rows) in by_day {
        rows.sort_by(|a, b| {
            (a.ts_ms, &a.service_id, &a.metric).cmp(&(b.ts_ms, &b.service_id, &b.metric))
        });
        let batch = anomalies_batch(table.schema(), &rows, detected_ms)?;
        table.append(day, batch).await?;
        n += rows.len() as u64;
    }
    Ok(n)
}

/// The rows of a batch of the embedded table (rows with a missing required column skipped).
fn anomalies_from(batch: &RecordBatch) -> Result<Vec<Anomaly>, StoreError> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| StoreError::Local(format!("anomalies: no column {name}")))
    };
    let text = |name: &str| -> Result<_, StoreError> {
        col(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| StoreError::Local(format!("anomalies: {name} is not text")))
    };
    let float = |name: &str| -> Result<_, StoreError> {
        col(name)?
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| StoreError::Local(format!("anomalies: {name} is not a float")))
    };
    let (service, metric, source) = (text("service_id")?, text("metric")?, text("source")?);
    let (severity, detector, message) = (text("severity")?, text("detector")?, text("message")?);
    let (score, value, expected) = (float("score")?, float("value")?, float("expected")?);
    let ts = col("ts")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| StoreError::Local("anomalies: ts is not a timestamp".into()))?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        if service.is_null(i) || ts.is_null(i) || metric.is_null(i) {
            continue;
        }
        out.push(Anomaly {
            service_id: service.value(i).to_string(),
            ts_ms: ts.value(i).div_euclid(1000),
            metric: metric.value(i).to_string(),
            source: AnomalySource::parse(source.value(i)).unwrap_or(AnomalySource::Stream),
            score: score.value(i),
            value: value.value(i),
            expected: (!expected.is_null(i)).then(|| expected.value(i)),
            severity: Severity::parse(severity.value(i)).unwrap_or(Severity::Warning),
            detector: detector.value(i).to_string(),
            message: (!message.is_null(i)).then(|| message.value(i).to_string()),
        });
    }
    Ok(out)
}

/// [`query`] on the embedded table: the days from `since`, the last row written per point,
/// newest first (then by service and metric, as PostgreSQL orders them).
async fn query_local(table: &LocalTable, q: &AnomalyQuery) -> Result<Vec<Anomaly>, StoreError> {
    let batches = table.read_from(day_of(q.since_ms)).await?;
    let mut latest: HashMap<(String, i64, String, &'static str), Anomaly> = HashMap::new();
    for batch in &batches {
        for a in anomalies_from(batch)? {
            latest.insert(key(&a), a);
        }
    }
    let mut hits: Vec<Anomaly> = latest.into_values().filter(|a| q.matches(a)).collect();
    hits.sort_by(|a, b| {
        b.ts_ms
            .cmp(&a.ts_ms)
            .then_with(|| a.service_id.cmp(&b.service_id))
            .then_with(|| a.metric.cmp(&b.metric))
    });
    hits.truncate(q.limit);
    Ok(hits)
}
