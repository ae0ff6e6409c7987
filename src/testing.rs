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

/// One HTTP/1.1 request to `127.0.0.1:port` over a plain socket (the crate has no HTTP
/// client), with a bearer token and a JSON body: (status, body), or `None` when the daemon
/// does not answer within 10 s (a test then fails instead of waiting forever).
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text.get(9..12)?.parse().ok()?;
        Some((status, text.split_once("\r\n\r\n")?.1.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

/// [`http`] GET.
pub async fn http_get(port: u16, path: &str, token: &str) -> Option<(u16, String)> {
    http(port, "GET", path, token, "").await
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
