//! The lifecycle jobs' figures on `/metrics` (`mcpwatch_lifecycle_*`, `mcpwatch_retention_*`,
//! `mcpwatch_aggregate_*`, `mcpwatch_store_size_bytes`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// `job` (retention, budget, aggregates) and `outcome` (ok, error, skipped).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub job: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    pub job: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResolutionLabel {
    pub resolution: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 ms .. ~9 min
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

/// Cheap to clone: every field is an `Arc` inside.
#[derive(Clone)]
pub struct LifecycleMetrics {
    pub runs: Family<RunLabels, Counter>,
    pub run_seconds: HistogramFamily<JobLabel>,
    pub partitions_created: Counter,
    pub partitions_dropped: Family<TableLabel, Counter>,
    pub partitions_archived: Family<TableLabel, Counter>,
    pub partitions_reattached: Family<TableLabel, Counter>,
    pub rows_archived: Family<TableLabel, Counter>,
    pub bytes_archived: Family<TableLabel, Counter>,
    pub rows_dropped: Family<TableLabel, Counter>,
    pub bytes_dropped: Family<TableLabel, Counter>,
    pub store_bytes: Gauge,
    pub budget_bytes: Gauge,
    pub over_budget: Gauge,
    pub emergency_cleanups: Counter,
    pub aggregate_rows: Family<ResolutionLabel, Counter>,
    pub aggregate_windows_until: Family<ResolutionLabel, Gauge>,
}

impl Default for LifecycleMetrics {
    fn default() -> Self {
        LifecycleMetrics {
            runs: Family::default(),
            run_seconds: Family::new_with_constructor(duration_histogram),
            partitions_created: Counter::default(),
            partitions_dropped: Family::default(),
            partitions_archived: Family::default(),
            partitions_reattached: Family::default(),
            rows_archived: Family::default(),
            bytes_archived: Family::default(),
            rows_dropped: Family::default(),
            bytes_dropped: Family::default(),
            store_bytes: Gauge::default(),
            budget_bytes: Gauge::default(),
            over_budget: Gauge::default(),
            emergency_cleanups: Counter::default(),
            aggregate_rows: Family::default(),
            aggregate_windows_until: Family::default(),
        }
    }
}

impl LifecycleMetrics {
    /// Records one finished run of `job`.
    pub fn run(&self, job: &'static str, outcome: &'static str, seconds: f64) {
        self.runs.get_or_create(&RunLabels { job, outcome }).inc();
        self.run_seconds
            .get_or_create(&JobLabel { job })
            .observe(seconds);
    }

    pub fn table(table: &str) -> TableLabel {
        TableLabel {
            table: table.to_string(),
        }
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "mcpwatch_lifecycle_runs",
            "Lifecycle job runs by job (retention, budget, aggregates) and outcome (ok, error, skipped: another replica holds the lock)",
            self.runs.clone(),
        );
        r.register_with_unit(
            "mcpwatch_lifecycle_run_duration",
            "Duration of one lifecycle job run, retries included",
            Unit::Seconds,
            self.run_seconds.clone(),
        );
        r.register(
            "mcpwatch_retention_partitions_created",
            "Daily partitions created ahead by the retention job",
            self.partitions_created.clone(),
        );
        r.register(
            "mcpwatch_retention_partitions_dropped",
            "Daily partitions dropped (retention or emergency cleanup), by table",
            self.partitions_dropped.clone(),
        );
        r.register(
            "mcpwatch_retention_partitions_archived",
            "Daily partitions archived as Arrow IPC and verified, by table",
            self.partitions_archived.clone(),
        );
        r.register(
            "mcpwatch_retention_partitions_reattached",
            "Detached partitions found inside their retention (an interrupted run) and attached again",
            self.partitions_reattached.clone(),
        );
        r.register(
            "mcpwatch_retention_rows_archived",
            "Rows written to the archive, by table",
            self.rows_archived.clone(),
        );
        r.register_with_unit(
            "mcpwatch_retention_archived",
            "Arrow IPC bytes written to the archive, by table",
            Unit::Bytes,
            self.bytes_archived.clone(),
        );
        r.register(
            "mcpwatch_retention_rows_dropped",
            "Rows removed from PostgreSQL with their partition, by table",
            self.rows_dropped.clone(),
        );
        r.register_with_unit(
            "mcpwatch_retention_dropped",
            "PostgreSQL bytes freed by dropping partitions, by table",
            Unit::Bytes,
            self.bytes_dropped.clone(),
        );
        r.register_with_unit(
            "mcpwatch_store_size",
            "Size of the store's schema (tables, indexes, TOAST) at the last budget check",
            Unit::Bytes,
            self.store_bytes.clone(),
        );
        r.register_with_unit(
            "mcpwatch_store_budget",
            "The configured storage budget (retention.budget_bytes; 0 = none)",
            Unit::Bytes,
            self.budget_bytes.clone(),
        );
        r.register(
            "mcpwatch_store_over_budget",
            "1 while the store is past retention.emergency_ratio of its budget (alert on this)",
            self.over_budget.clone(),
        );
        r.register(
            "mcpwatch_retention_emergency_cleanups",
            "Emergency cleanups run because the store passed its budget threshold",
            self.emergency_cleanups.clone(),
        );
        r.register(
            "mcpwatch_aggregate_rows",
            "Aggregate rows upserted, by resolution",
            self.aggregate_rows.clone(),
        );
        r.register(
            "mcpwatch_aggregate_watermark_seconds",
            "End (epoch seconds) of the last window aggregated, by resolution",
            self.aggregate_windows_until.clone(),
        );
    }
}
