//! Ingest: the first stage of a sample's journey (**ingest** → features → cache → store →
//! forecast/anomaly → api).
//!
//! A Kafka consumer group reads the metric topics; every message is decoded into
//! [`Sample`](crate::sample::Sample)s (MCP JSON or prometheus-kafka-adapter JSON), anything
//! invalid goes to the dead-letter topic with its reason, and batches of about
//! `ingest.batch_rows` samples go to the store. Offsets are committed only after the batch
//! carrying them is durable.

mod config;
pub mod decode;
pub mod dlq;
mod metrics;
pub mod mock;
mod pipeline;
mod source;

#[cfg(test)]
mod tests;

pub use config::{IngestConfig, KafkaConfig, MetricMapping, PrometheusConfig};
pub use metrics::IngestMetrics;
pub use pipeline::{Downstream, Pipeline, PipelineArgs};
pub use source::{Ack, Batch};

/// Errors that stop the source from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("could not start the source thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the source thread panicked")]
    Panicked,
}
