//! The cache's own metrics, exported on `/metrics` under `mcpwatch_cache_*`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use super::{CacheMode, Source, Tier};

/// `result` label of cache lookups: `hit`, `miss`, `error`, or `bypass` (degraded, not asked).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// `source` label of read-through answers: `cache`, `database`, `none`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: &'static str,
}

/// `op` label of backend errors: `get`, `put`, `ping`, `info`, `evict`, `decode`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

/// `reason` label of dropped cache writes: `full`, `degraded`, `expired`, `closed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// `tier` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabel {
    pub tier: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 20 µs to ~0.65 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(20e-6, 2.0, 16))
}

/// All cache metrics. One instance per daemon, shared (`Arc`) by the backend, the writer and
/// the read path; registered once with [`CacheMetrics::register`].
#[derive(Debug)]
pub struct CacheMetrics {
    pub(crate) lookups: Family<ResultLabel, Counter>,
    pub(crate) lookup_duration: HistogramFamily<ResultLabel>,
    pub(crate) reads: Family<SourceLabel, Counter>,
    pub(crate) read_duration: HistogramFamily<SourceLabel>,
    pub(crate) hit_ratio: Gauge<f64, AtomicU64>,
    pub(crate) errors: Family<OpLabel, Counter>,
    pub(crate) writes: Counter,
    pub(crate) compressed: Counter,
    pub(crate) batches: Counter,
    pub(crate) batch_duration: Histogram,
    pub(crate) dropped: Family<ReasonLabel, Counter>,
    pub(crate) refilled: Counter,
    pub(crate) pending_refill: Gauge,
    pub(crate) queue_depth: Gauge,
    pub(crate) degraded: Gauge,
    pub(crate) recoveries: Counter,
    pub(crate) memory_used: Gauge,
    pub(crate) memory_budget: Gauge,
    pub(crate) evicted: Family<TierLabel, Counter>,
}

impl Default for CacheMetrics {
    fn default() -> Self {
        CacheMetrics {
            lookups: Family::default(),
            lookup_duration: Family::new_with_constructor(latency_histogram),
            reads: Family::default(),
            read_duration: Family::new_with_constructor(latency_histogram),
            hit_ratio: Gauge::default(),
            errors: Family::default(),
            writes: Counter::default(),
            compressed: Counter::default(),
            batches: Counter::default(),
            batch_duration: latency_histogram(),
            dropped: Family::default(),
            refilled: Counter::default(),
            pending_refill: Gauge::default(),
            queue_depth: Gauge::default(),
            degraded: Gauge::default(),
            recoveries: Counter::default(),
            memory_used: Gauge::default(),
            memory_budget: Gauge::default(),
            evicted: Family::default(),
        }
    }
}

impl CacheMetrics {
    pub fn new() -> CacheMetrics {
        CacheMetrics::default()
    }

    /// Registers every metric under its full `mcpwatch_cache_…` name, so `registry` must be
    /// the unprefixed root (or a sub-registry without a prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mcpwatch_cache_lookups",
            "Hot-cache lookups on the read path, by result (hit, miss, error, bypass while degraded)",
            self.lookups.clone(),
        );
        registry.register_with_unit(
            "mcpwatch_cache_lookup_duration",
            "Time to ask the hot cache, by result (hit, miss)",
            Unit::Seconds,
            self.lookup_duration.clone(),
        );
        registry.register(
            "mcpwatch_cache_reads",
            "Read-through answers by the layer that served them (cache, database, none)",
            self.reads.clone(),
        );
        registry.register_with_unit(
            "mcpwatch_cache_read_duration",
            "Time to answer a read-through read, cache and database fallback included, by source",
            Unit::Seconds,
            self.read_duration.clone(),
        );
        registry.register(
            "mcpwatch_cache_hit_ratio",
            "Share of read-through reads served by the cache since start (0..1)",
            self.hit_ratio.clone(),
        );
        registry.register(
            "mcpwatch_cache_errors",
            "Hot-cache backend errors and timeouts, by operation",
            self.errors.clone(),
        );
        registry.register(
            "mcpwatch_cache_writes",
            "Entries written to the hot cache",
            self.writes.clone(),
        );
        registry.register(
            "mcpwatch_cache_compressed",
            "Entries stored LZ4-compressed",
            self.compressed.clone(),
        );
        registry.register(
            "mcpwatch_cache_batches",
            "Write pipelines sent to the hot cache",
            self.batches.clone(),
        );
        registry.register_with_unit(
            "mcpwatch_cache_batch_duration",
            "Time to write one pipeline",
            Unit::Seconds,
            self.batch_duration.clone(),
        );
        registry.register(
            "mcpwatch_cache_dropped",
            "Cache writes dropped (the database still has the data), by reason",
            self.dropped.clone(),
        );
        registry.register(
            "mcpwatch_cache_refilled",
            "Entries held while the cache was down and written when it returned",
            self.refilled.clone(),
        );
        registry.register(
            "mcpwatch_cache_pending_refill",
            "Entries held for the refill while the cache is down",
            self.pending_refill.clone(),
        );
        registry.register(
            "mcpwatch_cache_queue_depth",
            "Entries waiting in the write-behind queue",
            self.queue_depth.clone(),
        );
        registry.register(
            "mcpwatch_cache_degraded",
            "1 while the hot cache is unavailable and the daemon runs without it",
            self.degraded.clone(),
        );
        registry.register(
            "mcpwatch_cache_recoveries",
            "Times the hot cache came back after being degraded",
            self.recoveries.clone(),
        );
        registry.register_with_unit(
            "mcpwatch_cache_memory_used",
            "Memory in use by the hot cache at the last guard check (Redis: used_memory)",
            Unit::Bytes,
            self.memory_used.clone(),
        );
        registry.register_with_unit(
            "mcpwatch_cache_memory_budget",
            "Memory budget of the hot cache",
            Unit::Bytes,
            self.memory_budget.clone(),
        );
        registry.register(
            "mcpwatch_cache_evicted_keys",
            "Keys evicted by the memory guard, by tier",
            self.evicted.clone(),
        );
    }

    pub(crate) fn error(&self, op: &'static str) {
        self.errors.get_or_create(&OpLabel { op }).inc();
    }

    pub(crate) fn lookup(&self, result: &'static str, took: Option<Duration>) {
        let label = ResultLabel { result };
        self.lookups.get_or_create(&label).inc();
        if let Some(took) = took {
            self.lookup_duration
                .get_or_create(&label)
                .observe(took.as_secs_f64());
        }
    }

    pub(crate) fn read(&self, source: Source, took: Duration) {
        let label = SourceLabel {
            source: source.as_str(),
        };
        self.reads.get_or_create(&label).inc();
        self.read_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        let served = |s: Source| {
            self.reads
                .get_or_create(&SourceLabel { source: s.as_str() })
                .get()
        };
        let cache = served(Source::Cache);
        let total = cache + served(Source::Database) + served(Source::None);
        if total > 0 {
            self.hit_ratio.set(cache as f64 / total as f64);
        }
    }

    pub(crate) fn dropped(&self, reason: &'static str, n: u64) {
        if n > 0 {
            self.dropped
                .get_or_create(&ReasonLabel { reason })
                .inc_by(n);
        }
    }

    pub(crate) fn evicted(&self, tier: Tier, n: u64) {
        if n > 0 {
            self.evicted
                .get_or_create(&TierLabel {
                    tier: tier.as_str(),
                })
                .inc_by(n);
        }
    }

    pub(crate) fn set_mode(&self, mode: CacheMode) {
        self.degraded.set(i64::from(mode == CacheMode::Degraded));
    }

    pub(crate) fn set_budget(&self, bytes: u64) {
        self.memory_budget.set(bytes as i64);
    }

    pub(crate) fn set_used(&self, bytes: u64) {
        self.memory_used.set(bytes as i64);
    }

    /// Share of read-through reads served by the cache since start (for the realtime-stats
    /// endpoint).
    pub fn hit_ratio(&self) -> f64 {
        self.hit_ratio.get()
    }

    /// Read-through reads served so far by `source`.
    pub fn reads_served(&self, source: Source) -> u64 {
        self.reads
            .get_or_create(&SourceLabel {
                source: source.as_str(),
            })
            .get()
    }

    /// Cache writes dropped so far for `reason` (`full`, `degraded`, `expired`, `closed`).
    pub fn dropped_writes(&self, reason: &'static str) -> u64 {
        self.dropped.get_or_create(&ReasonLabel { reason }).get()
    }

    /// Backend errors so far for `op`.
    pub fn errors(&self, op: &'static str) -> u64 {
        self.errors.get_or_create(&OpLabel { op }).get()
    }

    /// Entries written and pipelines sent so far.
    pub fn written(&self) -> (u64, u64) {
        (self.writes.get(), self.batches.get())
    }

    /// Keys evicted so far from `tier`.
    pub fn evicted_keys(&self, tier: Tier) -> u64 {
        self.evicted
            .get_or_create(&TierLabel {
                tier: tier.as_str(),
            })
            .get()
    }
}
