//! The store's own figures, updated once per batch.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
            partitions_created: Counter::default(),
            up: Gauge::default(),
        }
    }
}

impl StoreMetrics {
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
            "Time to COPY one batch",
            prometheus_client::registry::Unit::Seconds,
            self.copy_seconds.clone(),
        );
        r.register_with_unit(
            "mcpwatch_store_batch_duration",
            "Time from BEGIN to COMMIT of one batch (COPY, offsets, commit)",
            prometheus_client::registry::Unit::Seconds,
            self.commit_seconds.clone(),
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
