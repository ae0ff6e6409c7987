//! librdkafka's in-process mock cluster: the Kafka of the embedded demo and of the tests.
//! It speaks the real protocol to the real client code; nothing of ours is faked.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// A one-broker mock cluster with instant group joins. Keep the value alive for as long as
/// the cluster is used: the cluster lives inside its producer.
pub struct MockKafka {
    /// The client that owns the mock cluster; also used to produce into it.
    producer: BaseProducer,
    /// `bootstrap.servers` for clients of the cluster.
    pub brokers: String,
}

impl MockKafka {
    /// Starts the cluster and creates `topics` as (name, partitions).
    pub fn new(topics: &[(&str, i32)]) -> Result<MockKafka, KafkaError> {
        let producer: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .set("linger.ms", "5")
            .create()?;
        // SAFETY: the handle belongs to `producer`, which outlives these calls.
        unsafe {
            let cluster =
                rdkafka::bindings::rd_kafka_handle_mock_cluster(producer.client().native_ptr());
            if cluster.is_null() {
                return Err(KafkaError::MockCluster(RDKafkaErrorCode::Fail));
            }
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
        }
        let brokers = {
            let mock = producer
                .client()
                .mock_cluster()
                .ok_or(KafkaError::MockCluster(RDKafkaErrorCode::Fail))?;
            for (topic, partitions) in topics {
                mock.create_topic(topic, *partitions, 1)?;
            }
            mock.bootstrap_servers()
        };
        Ok(MockKafka { producer, brokers })
    }

    /// Produces `(key, payload)` pairs and waits until all are acknowledged.
    pub fn produce(&self, topic: &str, messages: &[(String, Vec<u8>)]) -> Result<(), KafkaError> {
        for (key, payload) in messages {
            let mut record = BaseRecord::to(topic).key(key).payload(payload);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                        record = r;
                        self.producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        self.producer.flush(Duration::from_secs(30))
    }
}
