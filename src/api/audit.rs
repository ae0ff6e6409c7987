//! The plans audit trail: every answered `POST /plans` (who asked, the context, the result)
//! goes to the day-partitioned `plans` table ([`AuditTable`]: PostgreSQL's, or the embedded
//! store's Arrow files in the same daily layout), off the request path.
//!
//! The handler hands a [`PlanRecord`] to [`AuditSender::record`], which never waits: the
//! bounded queue (`api.audit_queue`) is full → the record is dropped and counted
//! (`mcpwatch_plans_audit_dropped_total`). One writer task drains the queue in batches of up
//! to `api.audit_batch` rows: in PostgreSQL one multi-row `INSERT … SELECT FROM unnest(…)` per
//! batch, creating the day's partition first when needed; in the embedded store one appended
//! segment per day.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, Float64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::metrics::ApiMetrics;
use crate::store::copy::day_of;
use crate::store::{LocalStore, LocalTable, Partitions, StoreError};

/// One plan, as recorded.
#[derive(Debug, Clone)]
pub struct PlanRecord {
    pub ts_ms: i64,
    pub key_id: Option<Arc<str>>,
    pub service_id: String,
    pub metric_name: String,
    pub github_url: String,
    /// The context with its defaults filled in (JSON).
    pub context: String,
    pub requirements: Option<String>,
    pub model_version: String,
    pub forecast_source: &'static str,
    pub flavor: &'static str,
    pub cost_per_day: f64,
    /// The forecast anomaly (JSON), if one was flagged.
    pub anomaly: Option<String>,
    /// The response body, verbatim.
    pub response: Bytes,
}

/// The producer side, held by the API state. Cheap to clone.
#[derive(Clone)]
pub struct AuditSender {
    /// Bounded queue to the writer task; `try_send` only, so a slow database never slows a
    /// request.
    tx: mpsc::Sender<PlanRecord>,
    metrics: ApiMetrics,
}

impl AuditSender {
    /// Queues a record; drops (and counts) it when the queue is full or the writer is gone.
    pub fn record(&self, r: PlanRecord) {
        if self.tx.try_send(r).is_err() {
            self.metrics.audit_dropped.inc();
        }
    }
}

/// Where the audit goes.
#[derive(Clone)]
pub enum AuditTable {
    /// PostgreSQL's `plans` table.
    Postgres {
        pool: deadpool_postgres::Pool,
        partitions: Arc<Partitions>,
    },
    /// The embedded store's `plans` table.
    Local(LocalTable),
}

impl AuditTable {
    /// The embedded store's `plans` table.
    pub fn local(store: &LocalStore) -> Result<AuditTable, StoreError> {
        Ok(AuditTable::Local(
            store.table("plans", Arc::new(plans_schema()))?,
        ))
    }
}

/// What the writer task needs.
pub struct AuditArgs {
    pub table: AuditTable,
    pub queue: usize,
    pub batch: usize,
    pub metrics: ApiMetrics,
}

/// Starts the writer. It stops after every sender is dropped and the queue is drained.
pub fn start(args: AuditArgs) -> (AuditSender, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(args.queue);
    let sender = AuditSender {
        tx,
        metrics: args.metrics.clone(),
    };
    (sender, tokio::spawn(run(args, rx)))
}

async fn run(args: AuditArgs, mut rx: mpsc::Receiver<PlanRecord>) {
    let mut batch = Vec::with_capacity(args.batch);
    loop {
        batch.clear();
        if rx.recv_many(&mut batch, args.batch).await == 0 {
            break;
        }
        let mut attempt = 0;
        loop {
            match write(&args, &batch).await {
                Ok(()) => {
                    args.metrics.audit_written.inc_by(batch.len() as u64);
                    break;
                }
                Err(e) if attempt < 2 => {
                    attempt += 1;
                    tracing::warn!(error = %e, rows = batch.len(), attempt, "plans audit write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, rows = batch.len(), "plans audit write failed; batch dropped");
                    args.metrics.audit_failed.inc_by(batch.len() as u64);
                    break;
                }
            }
        }
    }
}

async fn write(args: &AuditArgs, batch: &[PlanRecord]) -> Result<(), StoreError> {
    let (pool, partitions) = match &args.table {
        AuditTable::Postgres { pool, partitions } => (pool, partitions),
        AuditTable::Local(table) => return write_local(table, batch).await,
    };
    let client = pool.get().await?;
    let days: Vec<i64> = batch.iter().map(|r| day_of(r.ts_ms)).collect();
    partitions.ensure(&client, "plans", days).await?;
    let ts: Vec<DateTime<Utc>> = batch
        .iter()
        .map(|r| DateTime::from_timestamp_millis(r.ts_ms).unwrap_or_default())
        .collect();
    let key_id: Vec<Option<&str>> = batch.iter().map(|r| r.key_id.as_deref()).collect();
    let service: Vec<&str> = batch.iter().map(|r| r.service_id.as_str()).collect();
    let metric: Vec<&str> = batch.iter().map(|r| r.metric_name.as_str()).collect();
    let url: Vec<&str> = batch.iter().map(|r| r.github_url.as_str()).collect();
    let context: Vec<&str> = batch.iter().map(|r| r.context.as_str()).collect();
    let req: Vec<Option<&str>> = batch.iter().map(|r| r.requirements.as_deref()).collect();
    let version: Vec<&str> = batch.iter().map(|r| r.model_version.as_str()).collect();
    let source: Vec<&str> = batch.iter().map(|r| r.forecast_source).collect();
    let flavor: Vec<&str> = batch.iter().map(|r| r.flavor).collect();
    let cost: Vec<f64> = batch.iter().map(|r| r.cost_per_day).collect();
    let anomaly: Vec<Option<&str>> = batch.iter().map(|r| r.anomaly.as_deref()).collect();
    // the body is JSON we produced ourselves; as text it is valid UTF-8
    let response: Vec<&str> = batch
        .iter()
        .map(|r| std::str::from_utf8(&r.response).unwrap_or("null"))
        .collect();
    client
        .execute(
            "INSERT INTO plans (ts, key_id, service_id, metric_name, github_url, context, \
             requirements, model_version, forecast_source, recommended_flavor, \
             expected_cost_per_day, anomaly, response) \
             SELECT ts, key_id, service_id, metric_name, github_url, context::jsonb, \
                    requirements, model_version, forecast_source, flavor, cost, \
                    anomaly::jsonb, response::json \
             FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], \
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
                         $11::float8[], $12::text[], $13::text[]) \
                  AS t(ts, key_id, service_id, metric_name, github_url, context, requirements, \
                       model_version, forecast_source, flavor, cost, anomaly, response)",
            &[
                &ts, &key_id, &service, &metric, &url, &context, &req, &version, &source, &flavor,
                &cost, &anomaly, &response,
            ],
        )
        .await?;
    Ok(())
}

/// The Arrow schema of the embedded `plans` table: the PostgreSQL table's columns, with the
/// types its archive has (JSON as text).
pub fn plans_schema() -> Schema {
    let f = |n: &str, t: DataType| Field::new(n, t, true);
    Schema::new(vec![
        f(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        f("key_id", DataType::Utf8),
        f("service_id", DataType::Utf8),
        f("metric_name", DataType::Utf8),
        f("github_url", DataType::Utf8),
        f("context", DataType::Utf8),
        f("requirements", DataType::Utf8),
        f("model_version", DataType::Utf8),
        f("forecast_source", DataType::Utf8),
        f("recommended_flavor", DataType::Utf8),
        f("expected_cost_per_day", DataType::Float64),
        f("anomaly", DataType::Utf8),
        f("response", DataType::Utf8),
    ])
}

fn plans_batch(schema: &SchemaRef, rows: &[&PlanRecord]) -> Result<RecordBatch, StoreError> {
    let mut ts = TimestampMicrosecondBuilder::new();
    let mut texts: [StringBuilder; 11] = Default::default();
    let mut cost = Float64Builder::new();
    for r in rows {
        ts.append_value(r.ts_ms * 1000);
        let values = [
            r.key_id.as_deref(),
            Some(r.service_id.as_str()),
            Some(r.metric_name.as_str()),
            Some(r.github_url.as_str()),
            Some(r.context.as_str()),
            r.requirements.as_deref(),
            Some(r.model_version.as_str()),
            Some(r.forecast_source),
            Some(r.flavor),
            r.anomaly.as_deref(),
            Some(std::str::from_utf8(&r.response).unwrap_or("null")),
        ];
        for (b, v) in texts.iter_mut().zip(values) {
            b.append_option(v);
        }
        cost.append_value(r.cost_per_day);
    }
    let mut texts = texts
        .map(|mut b| Arc::new(b.finish()) as ArrayRef)
        .into_iter();
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ts.finish().with_timezone("UTC"))];
    // key_id … recommended_flavor, then the cost, then anomaly and response
    columns.extend(texts.by_ref().take(9));
    columns.push(Arc::new(cost.finish()));
    columns.extend(texts);
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| StoreError::Local(format!("plans batch: {e}")))
}

/// Appends a batch to the embedded `plans` table, one segment per day.
async fn write_local(table: &LocalTable, batch: &[PlanRecord]) -> Result<(), StoreError> {
    let mut by_day: std::collections::BTreeMap<i64, Vec<&PlanRecord>> = Default::default();
    for r in batch {
        by_day.entry(day_of(r.ts_ms)).or_default().push(r);
    }
    for (day, rows) in by_day {
        table
            .append(day, plans_batch(table.schema(), &rows)?)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ts_ms: i64, service: &str, key: Option<&str>) -> PlanRecord {
        PlanRecord {
            ts_ms,
            key_id: key.map(Arc::from),
            service_id: service.into(),
            metric_name: "total_events".into(),
            github_url: "https://github.com/acme/x".into(),
            context: r#"{"time_slot":"peak"}"#.into(),
            requirements: None,
            model_version: "lstm_total_events_v2".into(),
            forecast_source: "computed",
            flavor: "large",
            cost_per_day: 5.5,
            anomaly: None,
            response: Bytes::from_static(br#"{"recommended_flavor":"large"}"#),
        }
    }

    /// On the embedded store the audit lands in the `plans` table's daily Arrow files, which
    /// DataFusion (`/v1/query`) reads like PostgreSQL's table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plans_are_audited_into_the_embedded_store() {
        let root =
            std::env::temp_dir().join(format!("mcpwatch-audit-local-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = crate::store::LocalStore::open(crate::store::LocalStoreArgs {
            root: root.clone(),
            consumer_group: "g".into(),
            metrics: Default::default(),
        })
        .unwrap();
        let metrics = ApiMetrics::default();
        let (sender, task) = start(AuditArgs {
            table: AuditTable::local(&store).unwrap(),
            queue: 10,
            batch: 2,
            metrics: metrics.clone(),
        });
        let now = crate::daemon::now_ms();
        sender.record(record(now - 86_400_000, "fs", Some("abc")));
        sender.record(record(now, "fs", None));
        sender.record(record(now, "gh", Some("abc")));
        drop(sender);
        task.await.unwrap();
        assert_eq!(metrics.audit_written.get(), 3);
        let ctx = crate::lifecycle::query::context_over(std::slice::from_ref(&root))
            .await
            .unwrap();
        let r = crate::lifecycle::query::run_query(
            &ctx,
            "SELECT count(*) AS n, count(key_id) AS keyed, count(DISTINCT day) AS days, \
             sum(expected_cost_per_day) AS cost, max(response) AS response FROM plans",
            None,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        let rows = crate::lifecycle::query::to_json_rows(&r).unwrap();
        let row = &rows[0];
        assert_eq!(row["n"], 3, "{rows}");
        assert_eq!(row["keyed"], 2, "{rows}");
        assert_eq!(row["days"], 2, "{rows}");
        assert_eq!(row["cost"], 16.5, "{rows}");
        assert_eq!(row["response"], r#"{"recommended_flavor":"large"}"#);
        std::fs::remove_dir_all(&root).ok();
    }
}
