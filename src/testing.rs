//! Shared helpers for tests that talk to the real PostgreSQL on this machine and to
//! librdkafka's in-process mock Kafka cluster.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

pub use crate::ingest::mock::MockKafka;
use crate::store::{self, Partitions, StoreConfig};

/// `MCPWATCH_TEST_PG` or the machine's PostgreSQL.
pub fn pg_url() -> String {
    std::env::var("MCPWATCH_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema `test_<name>` (dropped first), migrated, and a pool using it.
pub async fn fresh_store(name: &str) -> (deadpool_postgres::Pool, StoreConfig) {
    let config = StoreConfig {
        url: pg_url(),
        schema: format!("test_{name}"),
        pool_size: 4,
        ..StoreConfig::default()
    };
    let pool = store::pool(&config).unwrap();
    let client = pool
        .get()
        .await
        .expect("PostgreSQL must run on 127.0.0.1:5432 for the tests");
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", config.schema))
        .await
        .unwrap();
    drop(client);
    store::prepare(
        &pool,
        &config,
        &Partitions::default(),
        crate::daemon::now_ms(),
    )
    .await
    .unwrap();
    (pool, config)
}

/// A dead letter read back: (reason code header, reason header, payload).
pub type Letter = (String, String, Vec<u8>);

/// Reads `topic` from the beginning until `count` messages arrived or `timeout` passed.
pub fn read_topic(brokers: &str, topic: &str, count: usize, timeout: Duration) -> Vec<Letter> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < count && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let header = |name: &str| {
                m.headers()
                    .and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            out.push((
                header(crate::ingest::dlq::REASON_CODE_HEADER),
                header(crate::ingest::dlq::REASON_HEADER),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

/// The single `bigint` a query such as `SELECT count(*) …` answers.
pub async fn count(pool: &deadpool_postgres::Pool, sql: &str) -> i64 {
    pool.get()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}
