//! The plans audit trail: every answered `POST /plans` (who asked, the context, the result)
//! goes to the day-partitioned `plans` table, off the request path.
//!
//! The handler hands a [`PlanRecord`] to [`AuditSender::record`], which never waits: the
//! bounded queue (`api.audit_queue`) is full → the record is dropped and counted
//! (`mcpwatch_plans_audit_dropped_total`). One writer task drains the queue in batches of up
//! to `api.audit_batch` rows, one multi-row `INSERT … SELECT FROM unnest(…)` per batch, and
//! creates the day's partition first when needed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::metrics::ApiMetrics;
use crate::store::copy::day_of;
use crate::store::Partitions;

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

/// What the writer task needs.
pub struct AuditArgs {
    pub pool: deadpool_postgres::Pool,
    pub partitions: Arc<Partitions>,
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

async fn write(args: &AuditArgs, batch: &[PlanRecord]) -> Result<(), crate::store::StoreError> {
    let client = args.pool.get().await?;
    let days: Vec<i64> = batch.iter().map(|r| day_of(r.ts_ms)).collect();
    args.partitions.ensure(&client, "plans", days).await?;
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
