//! The dead-letter topic: original bytes plus the reason, in headers, for every sample that
//! could not be decoded or validated.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use super::config::KafkaConfig;
use super::metrics::IngestMetrics;

/// Header with the human-readable reason.
pub const REASON_HEADER: &str = "mcpwatch.reason";
/// Header with the bounded reason code (the metric label).
pub const REASON_CODE_HEADER: &str = "mcpwatch.reason_code";
pub const SOURCE_TOPIC_HEADER: &str = "mcpwatch.source.topic";
pub const SOURCE_PARTITION_HEADER: &str = "mcpwatch.source.partition";
pub const SOURCE_OFFSET_HEADER: &str = "mcpwatch.source.offset";

/// One rejected sample with where it came from.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub bytes: Vec<u8>,
    pub reason: String,
    pub code: &'static str,
}

/// Publishes dead letters and waits for Kafka to acknowledge them.
pub struct DeadLetterQueue {
    /// Idempotent producer shared by every writer task; librdkafka batches internally.
    producer: FutureProducer,
    topic: String,
    metrics: IngestMetrics,
}

impl DeadLetterQueue {
    pub fn new(
        kafka: &KafkaConfig,
        metrics: IngestMetrics,
    ) -> Result<DeadLetterQueue, rdkafka::error::KafkaError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &kafka.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // A batch's commit waits for its dead letters (they must be durable before the
            // offsets are), but they are sent when its COPY starts, so a short linger hides
            // behind the COPY. Measured against none in six alternating pairs, 2 ms drained
            // a median ~175 k samples/s against ~163 k (within this machine's noise in some
            // pairs), with the same wait for the acknowledgements: presumably fewer, larger
            // produce requests cost the daemon and the broker less CPU (BENCHMARKS.md,
            // ingest, session 7). `kafka.properties` can override it.
            .set("linger.ms", "2")
            .set("message.timeout.ms", "30000");
        for (k, v) in &kafka.properties {
            cfg.set(k, v);
        }
        Ok(DeadLetterQueue {
            producer: cfg.create()?,
            topic: kafka.dead_letter_topic.clone(),
            metrics,
        })
    }

    /// Sends every letter and returns once all are acknowledged (or the first error).
    pub async fn publish(&self, letters: &[DeadLetter]) -> Result<(), rdkafka::error::KafkaError> {
        let mut pending = Vec::with_capacity(letters.len());
        for l in letters {
            let partition = l.partition.to_string();
            let offset = l.offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: REASON_HEADER,
                    value: Some(l.reason.as_bytes()),
                })
                .insert(Header {
                    key: REASON_CODE_HEADER,
                    value: Some(l.code.as_bytes()),
                })
                .insert(Header {
                    key: SOURCE_TOPIC_HEADER,
                    value: Some(l.topic.as_bytes()),
                })
                .insert(Header {
                    key: SOURCE_PARTITION_HEADER,
                    value: Some(partition.as_bytes()),
                })
                .insert(Header {
                    key: SOURCE_OFFSET_HEADER,
                    value: Some(offset.as_bytes()),
                });
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic)
                .payload(&l.bytes[..])
                .headers(headers);
            if let Some(key) = &l.key {
                record = record.key(&key[..]);
            }
            pending.push(self.producer.send(record, Duration::from_secs(30)));
        }
        let mut first_error = None;
        for (result, _) in futures::future::join_all(pending)
            .await
            .into_iter()
            .zip(letters)
        {
            match result {
                Ok(_) => {
                    self.metrics.dead_letters.inc();
                }
                Err((e, _)) => {
                    self.metrics.dead_letter_errors.inc();
                    first_error.get_or_insert(e);
                }
            };
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}
