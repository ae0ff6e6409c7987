//! The store's own figures, updated once per batch.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type StageLabels = Vec<(&'static str, &'static str)>;
type StageFamily = Family<StageLabels, Histogram, fn() -> Histogram>;

/// The steps of one batch's commit besides the COPY itself (which has its own histogram),
/// one `stage` label value each: where the time between BEGIN and COMMIT goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchStage {
    /// Waiting for a pooled connection.
    Connection,
    /// Making sure the batch's daily partitions exist (a lookup unless a day is new).
    Partitions,
    /// Encoding the rows as one binary COPY stream.
    Encode,
    /// `BEGIN`.
    Begin,
    /// Moving a batch that tripped over the natural key from the staging table into the
    /// samples table, skipping the duplicates (rare: a replay or a producer resend).
    Dedupe,
    /// The offsets upsert inside the transaction.
    Offsets,
    /// Waiting, after the rows and offsets are staged, for the commit gate (Kafka
    /// acknowledging the batch's dead letters).
    Gate,
    /// `COMMIT` (the WAL flush).
    Commit,
}

impl BatchStage {
    /// Every stage, in the order a transaction passes them.
    pub const ALL: [BatchStage; 8] = [
        BatchStage::Connection,
        BatchStage::Partitions,
        BatchStage::Encode,
        BatchStage::Begin,
        BatchStage::Dedupe,
        BatchStage::Offsets,
        BatchStage::Gate,
        BatchStage::Commit,
    ];

    /// The `stage` label value.
    pub fn label(self) -> &'static str {
        match self {
            BatchStage::Connection => "connection",
            BatchStage::Partitions => "partitions",
            BatchStage::Encode => "encode",
            BatchStage::Begin => "begin",
            BatchStage::Dedupe => "dedupe",
            BatchStage::Offsets => "offsets",
            BatchStage::Gate => "gate",
            BatchStage::Commit => "commit",
        }
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_025, 1.5, 32))
}

/// Cheap to clone: every field is an `Arc` inside.
#[derive(Clone)]
pub struct StoreMetrics {
    pub rows_stored: Counter,
    pub duplicates_skipped: Counter,
    pub batches: Counter,
    pub errors: Counter,
    pub batch_rows: Histogram,
    pub copy_seconds: Histogram,
    pub commit_seconds: Histogram,
    /// Seconds per [`BatchStage`] of each batch attempt.
    pub stage_seconds: StageFamily,
    pub partitions_created: Counter,
    pub up: Gauge,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            rows_stored: Counter::default(),
            duplicates_skipped: Counter::default(),
            batches: Counter::default(),
            errors: Counter::default(),
            batch_rows: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            copy_seconds: Histogram::new(exponential_buckets(0.000_25, 1.25, 48)),
            commit_seconds: Histogram::new(exponential_buckets(0.000_25, 1.25, 48)),
            stage_seconds: Family::new_with_constructor(latency_histogram),
            partitions_created: Counter::default(),
            up: Gauge::default(),
        }
    }
}

impl StoreMetrics {
    /// Records `seconds` spent in `stage` by one batch attempt.
    pub fn stage(&self, stage: BatchStage, seconds: std::time::Duration) {
        self.stage_seconds
            .get_or_create(&vec![("stage", stage.label())])
            .observe(seconds.as_secs_f64());
    }

    /// Records one batch write of `rows` samples that began at `started`, whichever durable
    /// store ([`DurableSink`](super::DurableSink)) made it.
    pub fn record_write(
        &self,
        rows: usize,
        started: std::time::Instant,
        result: &Result<super::WriteOutcome, super::StoreError>,
    ) {
        match result {
            Ok(outcome) => {
                self.up.set(1);
                self.batches.inc();
                self.rows_stored.inc_by(outcome.inserted);
                self.duplicates_skipped.inc_by(outcome.duplicates);
                self.batch_rows.observe(rows as f64);
                self.commit_seconds.observe(started.elapsed().as_secs_f64());
            }
            Err(_) => {
                self.up.set(0);
                self.errors.inc();
            }
        }
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "mcpwatch_samples_stored",
            "Samples committed to PostgreSQL",
            self.rows_stored.clone(),
        );
        r.register(
            "mcpwatch_store_duplicates_skipped",
            "Samples already stored (same natural key) and skipped",
            self.duplicates_skipped.clone(),
        );
        r.register(
            "mcpwatch_store_batches",
            "Batches committed to PostgreSQL",
            self.batches.clone(),
        );
        r.register(
            "mcpwatch_store_errors",
            "Failed batch attempts (retried)",
            self.errors.clone(),
        );
        r.register(
            "mcpwatch_store_batch_rows",
            "Rows per committed batch",
            self.batch_rows.clone(),
        );
        r.register_with_unit(
            "mcpwatch_store_copy_duration",
            "Time of one COPY statement (at most ingest.batch_rows rows)",
            prometheus_client::registry::Unit::Seconds,
            self.copy_seconds.clone(),
        );
        r.register_with_unit(
            "mcpwatch_store_batch_duration",
            "Time to commit one write: connection, COPYs, offsets, gate and COMMIT (several queued batches may share one)",
            prometheus_client::registry::Unit::Seconds,
            self.commit_seconds.clone(),
        );
        r.register_with_unit(
            "mcpwatch_store_stage_duration",
            "Time one batch attempt spends in each step besides the COPY (by stage)",
            prometheus_client::registry::Unit::Seconds,
            self.stage_seconds.clone(),
        );
        r.register(
            "mcpwatch_store_partitions_created",
            "Daily partitions created",
            self.partitions_created.clone(),
        );
        r.register(
            "mcpwatch_store_up",
            "1 when the last PostgreSQL operation succeeded",
            self.up.clone(),
        );
    }
}
