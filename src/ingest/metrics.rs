//! The source's own figures. Updated once per message batch or per statistics report.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
/// A counter of seconds.
pub type Seconds = Counter<f64, std::sync::atomic::AtomicU64>;

/// Where a writer task spends its time, one label value each (see [`IngestMetrics::writer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterStage {
    /// Waiting for the source to hand over a batch (the writers are ahead).
    Idle,
    /// Committing rows and offsets to the durable store, retries included (the batch's dead
    /// letters are published meanwhile, and the commit waits for Kafka to acknowledge them).
    Store,
    /// Handing the committed batch to the features stage (a full queue waits here).
    Handoff,
}

impl WriterStage {
    fn label(self) -> &'static str {
        match self {
            WriterStage::Idle => "idle",
            WriterStage::Store => "store",
            WriterStage::Handoff => "handoff",
        }
    }
}

/// Cheap to clone: every field is an `Arc` inside.
#[derive(Clone, Default)]
pub struct IngestMetrics {
    pub messages: Counter,
    pub bytes: Counter,
    pub samples_decoded: Counter,
    pub rejected: Family<Labels, Counter>,
    pub skipped: Family<Labels, Counter>,
    pub dead_letters: Counter,
    pub dead_letter_errors: Counter,
    pub replayed: Counter,
    pub consumer_lag: Family<Labels, Gauge>,
    pub inflight_batches: Gauge,
    pub backpressure_seconds: Seconds,
    /// Writer-task seconds by [`WriterStage`], summed over writers.
    pub writer_seconds: Family<Labels, Seconds>,
    pub kafka_errors: Counter,
    pub kafka_up: Gauge,
    pub rebalances: Family<Labels, Counter>,
}

impl IngestMetrics {
    pub fn rejected(&self, reason: &'static str) -> Counter {
        self.rejected
            .get_or_create(&vec![("reason", reason.to_string())])
            .clone()
    }

    pub fn skipped(&self, reason: &'static str) -> Counter {
        self.skipped
            .get_or_create(&vec![("reason", reason.to_string())])
            .clone()
    }

    /// The seconds counter of one writer stage.
    pub fn writer(&self, stage: WriterStage) -> Seconds {
        self.writer_seconds
            .get_or_create(&vec![("stage", stage.label().to_string())])
            .clone()
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "mcpwatch_messages_consumed",
            "Kafka messages consumed",
            self.messages.clone(),
        );
        r.register_with_unit(
            "mcpwatch_consumed",
            "Kafka payload bytes consumed",
            prometheus_client::registry::Unit::Bytes,
            self.bytes.clone(),
        );
        r.register(
            "mcpwatch_samples_decoded",
            "Samples decoded and validated",
            self.samples_decoded.clone(),
        );
        r.register(
            "mcpwatch_samples_rejected",
            "Samples (or whole messages) sent to the dead-letter topic, by reason",
            self.rejected.clone(),
        );
        r.register(
            "mcpwatch_samples_skipped",
            "Samples skipped on purpose (unmapped Prometheus metrics, NaN values), by reason",
            self.skipped.clone(),
        );
        r.register(
            "mcpwatch_dead_letters_published",
            "Dead letters acknowledged by Kafka",
            self.dead_letters.clone(),
        );
        r.register(
            "mcpwatch_dead_letter_errors",
            "Failed dead-letter publish attempts (retried)",
            self.dead_letter_errors.clone(),
        );
        r.register(
            "mcpwatch_messages_replayed",
            "Messages skipped because PostgreSQL already holds them (replay after a crash or rebalance)",
            self.replayed.clone(),
        );
        r.register(
            "mcpwatch_consumer_lag",
            "Messages behind the high watermark, per partition",
            self.consumer_lag.clone(),
        );
        r.register(
            "mcpwatch_inflight_batches",
            "Batches handed to writers and not yet committed",
            self.inflight_batches.clone(),
        );
        r.register_with_unit(
            "mcpwatch_backpressure",
            "Time the source waited for a writer queue (a slow database slows consumption)",
            prometheus_client::registry::Unit::Seconds,
            self.backpressure_seconds.clone(),
        );
        r.register_with_unit(
            "mcpwatch_ingest_writer",
            "Writer-task time by stage (idle, store, handoff), summed over writers: \
             which step bounds the drain",
            prometheus_client::registry::Unit::Seconds,
            self.writer_seconds.clone(),
        );
        r.register(
            "mcpwatch_kafka_errors",
            "Errors reported by librdkafka",
            self.kafka_errors.clone(),
        );
        r.register(
            "mcpwatch_kafka_up",
            "1 while at least one broker connection is up",
            self.kafka_up.clone(),
        );
        r.register(
            "mcpwatch_rebalances",
            "Partition assignments and revocations",
            self.rebalances.clone(),
        );
    }
}
