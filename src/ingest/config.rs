//! Settings of the Kafka source (`[kafka]`) and of decoding and batching (`[ingest]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Where the samples come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated.
    pub brokers: String,
    /// The consumer group every replica joins; Kafka spreads the partitions over them.
    pub group_id: String,
    /// Topics to consume. Each message is MCP JSON or prometheus-kafka-adapter JSON (detected
    /// per sample), a single object or an array.
    pub topics: Vec<String>,
    /// Where undecodable or invalid samples go, with the reason in a header.
    pub dead_letter_topic: String,
    /// Where to start when the group has no committed offset: `earliest` or `latest`.
    pub auto_offset_reset: String,
    pub session_timeout_ms: u32,
    /// How often librdkafka reports statistics (consumer lag, broker state).
    pub statistics_interval_ms: u32,
    /// Extra librdkafka properties passed verbatim (e.g. `security.protocol`).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "mcpwatch".into(),
            topics: vec!["mcp-metrics".into()],
            dead_letter_topic: "mcpwatch-dead-letter".into(),
            auto_offset_reset: "earliest".into(),
            session_timeout_ms: 10_000,
            statistics_interval_ms: 5_000,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(ConfigError::invalid(
                "kafka.brokers",
                "is empty",
                "set it to host:port[,host:port…] of your Kafka bootstrap servers",
            ));
        }
        if self.group_id.trim().is_empty() {
            return Err(ConfigError::invalid(
                "kafka.group_id",
                "is empty",
                "name the consumer group all replicas share, e.g. \"mcpwatch\"",
            ));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(ConfigError::invalid(
                "kafka.topics",
                "must list at least one non-empty topic",
                "e.g. topics = [\"mcp-metrics\"]",
            ));
        }
        if self.topics.contains(&self.dead_letter_topic) || self.dead_letter_topic.is_empty() {
            return Err(ConfigError::invalid(
                "kafka.dead_letter_topic",
                "must be a non-empty topic that is not also consumed",
                "e.g. dead_letter_topic = \"mcpwatch-dead-letter\"",
            ));
        }
        if !matches!(self.auto_offset_reset.as_str(), "earliest" | "latest") {
            return Err(ConfigError::invalid(
                "kafka.auto_offset_reset",
                format!("unknown value {:?}", self.auto_offset_reset),
                "use \"earliest\" or \"latest\"",
            ));
        }
        if !(1_000..=300_000).contains(&self.session_timeout_ms) {
            return Err(ConfigError::invalid(
                "kafka.session_timeout_ms",
                format!("{} is outside 1000..=300000", self.session_timeout_ms),
                "use e.g. 10000",
            ));
        }
        Ok(())
    }
}

/// Decoding, validation and batching.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Rows per PostgreSQL COPY batch.
    pub batch_rows: usize,
    /// A partial batch is flushed after this long, so quiet topics still land promptly.
    pub flush_interval_ms: u64,
    /// Parallel writers (one PostgreSQL connection each). Kafka partitions are pinned to
    /// writers, so each partition's offsets still advance in order.
    pub writers: usize,
    /// Batches queued per writer before the source pauses consumption (backpressure). Deep
    /// enough that a burst of one partition's messages (a Kafka fetch returns them partition
    /// by partition) does not stall the source while the other writers drain.
    pub queue_batches: usize,
    /// Most queued batches one writer commits in a single PostgreSQL transaction (each still
    /// its own `batch_rows` COPY). A writer only groups batches already waiting in its queue,
    /// never waits for more, so a caught-up writer commits each batch alone; a backlog pays
    /// BEGIN, the offsets upsert, the dead-letter wait and COMMIT once per group. 1 turns
    /// grouping off.
    pub commit_batches: usize,
    /// Messages larger than this go to the dead-letter topic unread.
    pub max_message_bytes: usize,
    /// Samples further in the future than this are rejected (clock skew guard).
    pub max_future_secs: i64,
    /// Samples older than this are rejected (they would land in dropped partitions).
    pub max_age_secs: i64,
    pub prometheus: PrometheusConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_rows: 1000,
            flush_interval_ms: 250,
            writers: 2,
            queue_batches: 16,
            commit_batches: 4,
            max_message_bytes: 1 << 20,
            max_future_secs: 3600,
            max_age_secs: 7 * 86_400,
            prometheus: PrometheusConfig::default(),
        }
    }
}

impl IngestConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100_000).contains(&self.batch_rows) {
            return Err(ConfigError::invalid(
                "ingest.batch_rows",
                format!("{} is outside 1..=100000", self.batch_rows),
                "use 1000 (the COPY batch size the store is tuned for)",
            ));
        }
        if !(1..=60_000).contains(&self.flush_interval_ms) {
            return Err(ConfigError::invalid(
                "ingest.flush_interval_ms",
                format!("{} is outside 1..=60000", self.flush_interval_ms),
                "use e.g. 250",
            ));
        }
        if !(1..=64).contains(&self.writers) {
            return Err(ConfigError::invalid(
                "ingest.writers",
                format!("{} is outside 1..=64", self.writers),
                "use about the number of cores PostgreSQL can spare, e.g. 2",
            ));
        }
        if !(1..=1024).contains(&self.queue_batches) {
            return Err(ConfigError::invalid(
                "ingest.queue_batches",
                format!("{} is outside 1..=1024", self.queue_batches),
                "use e.g. 4",
            ));
        }
        if !(1..=64).contains(&self.commit_batches) {
            return Err(ConfigError::invalid(
                "ingest.commit_batches",
                format!("{} is outside 1..=64", self.commit_batches),
                "use e.g. 4 (1 commits every batch on its own)",
            ));
        }
        if self.max_message_bytes < 1024 {
            return Err(ConfigError::invalid(
                "ingest.max_message_bytes",
                "is below 1024",
                "use e.g. 1048576",
            ));
        }
        if self.max_future_secs < 0 || self.max_age_secs <= 0 {
            return Err(ConfigError::invalid(
                "ingest.max_age_secs",
                "max_age_secs must be > 0 and max_future_secs >= 0",
                "use e.g. max_age_secs = 604800, max_future_secs = 3600",
            ));
        }
        self.prometheus.validate()
    }
}

/// How prometheus-kafka-adapter samples map onto services and sample fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Labels tried in order for the service id; the first one present wins.
    pub service_labels: Vec<String>,
    /// Label carrying the instance (`unique_machines`).
    pub instance_label: String,
    pub host_label: String,
    pub platform_label: String,
    /// What to do with a metric that has no mapping: `ignore` (counted) or `dead_letter`.
    pub unmapped: String,
    /// Metric name → field.
    pub metrics: BTreeMap<String, MetricMapping>,
}

/// Where one Prometheus metric lands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricMapping {
    /// `cpu`, `memory`, `response_time_ms`, `requests`, `errors` or `status`.
    pub field: String,
    /// `gauge` (value as is) or `counter` (reset-aware increase since the previous sample).
    #[serde(default = "gauge")]
    pub kind: String,
    /// Multiplied into the value first (e.g. 1000 for seconds → milliseconds).
    #[serde(default = "one")]
    pub scale: f64,
}

fn gauge() -> String {
    "gauge".into()
}
fn one() -> f64 {
    1.0
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        let m = |field: &str, kind: &str, scale: f64| MetricMapping {
            field: field.into(),
            kind: kind.into(),
            scale,
        };
        let metrics = [
            ("mcp_cpu_usage_ratio", m("cpu", "gauge", 1.0)),
            ("mcp_memory_usage_ratio", m("memory", "gauge", 1.0)),
            (
                "mcp_response_time_seconds",
                m("response_time_ms", "gauge", 1000.0),
            ),
            ("mcp_requests_total", m("requests", "counter", 1.0)),
            ("mcp_errors_total", m("errors", "counter", 1.0)),
            ("mcp_up", m("status", "gauge", 1.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        PrometheusConfig {
            service_labels: vec!["server_id".into(), "service".into(), "job".into()],
            instance_label: "instance".into(),
            host_label: "host".into(),
            platform_label: "platform".into(),
            unmapped: "ignore".into(),
            metrics,
        }
    }
}

impl PrometheusConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.service_labels.is_empty() {
            return Err(ConfigError::invalid(
                "ingest.prometheus.service_labels",
                "is empty",
                "list the labels that name the service, e.g. [\"server_id\", \"job\"]",
            ));
        }
        if !matches!(self.unmapped.as_str(), "ignore" | "dead_letter") {
            return Err(ConfigError::invalid(
                "ingest.prometheus.unmapped",
                format!("unknown value {:?}", self.unmapped),
                "use \"ignore\" or \"dead_letter\"",
            ));
        }
        for (name, m) in &self.metrics {
            let key = format!("ingest.prometheus.metrics.{name}");
            if !matches!(
                m.field.as_str(),
                "cpu" | "memory" | "response_time_ms" | "requests" | "errors" | "status"
            ) {
                return Err(ConfigError::invalid(
                    &format!("{key}.field"),
                    format!("unknown field {:?}", m.field),
                    "use cpu, memory, response_time_ms, requests, errors or status",
                ));
            }
            if !matches!(m.kind.as_str(), "gauge" | "counter") {
                return Err(ConfigError::invalid(
                    &format!("{key}.kind"),
                    format!("unknown kind {:?}", m.kind),
                    "use \"gauge\" or \"counter\"",
                ));
            }
            if !m.scale.is_finite() || m.scale <= 0.0 {
                return Err(ConfigError::invalid(
                    &format!("{key}.scale"),
                    format!("{} is not a positive number", m.scale),
                    "use e.g. 1.0, or 1000 to turn seconds into milliseconds",
                ));
            }
        }
        Ok(())
    }
}
