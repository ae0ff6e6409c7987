//! `mcpwatch demo`: the daemon on an embedded default, for a laptop.
//!
//! Kafka is librdkafka's in-process mock cluster, fed by the built-in traffic
//! [generator](crate::generate) (first a backfill of recent history, then live samples);
//! the hot cache is the in-process [`MemoryCache`](crate::cache::MemoryCache) with the same
//! tiers; the durable store is the embedded [`LocalStore`](crate::store::LocalStore) (LZ4
//! Arrow IPC files in daily folders, the archive's format, queried with DataFusion), so no
//! external service is needed. Everything between them — ingest, features, forecasts, API —
//! is the production code started by [`daemon::run`](crate::daemon::run).

use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cache::CacheBackend;
use crate::config::Config;
use crate::generate::{Traffic, TrafficArgs};
use crate::ingest::mock::MockKafka;

const TOPIC: &str = "mcp-metrics";
const DEAD_LETTERS: &str = "mcpwatch-dead-letter";

/// What the demo simulates.
#[derive(Debug, Clone)]
pub struct DemoArgs {
    pub servers: usize,
    /// Hours of history produced before going live (the forecaster needs 24 buckets).
    pub history_hours: i64,
    /// Seconds between two live samples of one server.
    pub live_step_secs: i64,
}

/// Starts the embedded Kafka and the generator, then runs the daemon until `shutdown`.
pub async fn run(
    mut config: Config,
    args: DemoArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let kafka =
        MockKafka::new(&[(TOPIC, 4), (DEAD_LETTERS, 1)]).context("starting the embedded Kafka")?;
    config.kafka.brokers = kafka.brokers.clone();
    config.kafka.topics = vec![TOPIC.into()];
    config.kafka.dead_letter_topic = DEAD_LETTERS.into();
    config.kafka.statistics_interval_ms = 1000;
    // every demo starts a new cluster whose offsets restart at 0, while PostgreSQL keeps the
    // offsets of earlier runs: a group of its own per run keeps them from being skipped
    config.kafka.group_id = format!("{}-demo-{}", config.kafka.group_id, crate::daemon::now_ms());
    config.cache.backend = CacheBackend::Memory;
    // samples go to the embedded Arrow store (no PostgreSQL needed for the data path)
    config.store.backend = crate::store::StoreBackend::Local;
    // 30-minute buckets fill a demo's short history twice as fast, and run the model trained
    // on 30-minute rows (lstm_total_events_v2), named explicitly: the default model
    // (lstm_total_events_h1) is the one for the daemon's default 1 h buckets
    config.features.bucket_width_secs = 1800;
    if config.forecast.model == std::path::Path::new(crate::forecast::config::DEFAULT_MODEL) {
        config.forecast.model = crate::forecast::config::HALF_HOUR_MODEL.into();
    }
    for version in config.forecast.routes.values_mut() {
        if version == crate::forecast::config::DEFAULT_ROUTE {
            *version = crate::forecast::config::HALF_HOUR_ROUTE.into();
        }
    }
    config.forecast.cadence_secs = config.forecast.cadence_secs.min(30);
    config.validate()?;

    let now = crate::daemon::now_ms();
    let history_ms = args.history_hours * 3_600_000;
    // backfill: one message per server every 15 minutes (two per 30-minute bucket), about as
    // many messages as the mock cluster was shown to hold. The anomaly detectors learn 150
    // buckets before they score: 96 h of history are 192 buckets, so the last 21 h of history
    // are checked. Counted in rounds, not samples: a message may carry several samples.
    let step_ms = 900_000;
    let rounds = (history_ms / step_ms) as usize;
    let backfill: Vec<(String, Vec<u8>)> = Traffic::new(TrafficArgs {
        services: args.servers,
        samples: usize::MAX,
        malformed_ratio: 0.005,
        start_ms: now - history_ms,
        step_ms,
        ..TrafficArgs::default()
    })
    .take(args.servers.max(1) * rounds)
    .map(|m| (m.key, m.payload))
    .collect();
    kafka
        .produce(TOPIC, &backfill)
        .context("backfilling the embedded Kafka")?;

    let live_shutdown = shutdown.clone();
    let live_args = args.clone();
    let producer = std::thread::Builder::new()
        .name("mcpwatch-demo-generator".into())
        .spawn(move || {
            let step_ms = live_args.live_step_secs * 1000;
            let start = crate::daemon::now_ms();
            let mut traffic = Traffic::new(TrafficArgs {
                services: live_args.servers,
                samples: usize::MAX,
                malformed_ratio: 0.005,
                start_ms: start,
                step_ms,
                // the backfill's seed: each server keeps its request rate when the demo goes
                // live (another seed redraws every rate, a level shift the detectors flag)
                ..TrafficArgs::default()
            });
            let mut round = Vec::with_capacity(live_args.servers);
            let mut tick = 0i64;
            while !live_shutdown.is_cancelled() {
                round.clear();
                round.extend(
                    traffic
                        .by_ref()
                        .take(live_args.servers)
                        .map(|m| (m.key, m.payload)),
                );
                if let Err(e) = kafka.produce(TOPIC, &round) {
                    tracing::warn!(error = %e, "demo generator could not produce");
                }
                tick += 1;
                let due = start + tick * step_ms;
                while crate::daemon::now_ms() < due && !live_shutdown.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            kafka
        })?;

    let listen = config.http.listen.clone();
    // a key for trying the API (the table is created by the migrations)
    let api_key = demo_key(&config).await;
    let key_line = match &api_key {
        Ok(token) => format!(
            "  api key:  {token}\n  plan:     curl -s -X POST http://{listen}/plans -H 'Authorization: Bearer {token}' \\\n              -H 'Content-Type: application/json' -d '{{\"service_id\":\"github-000\",\"metric_name\":\"total_events\",\"context\":{{\"github_url\":\"https://github.com/acme/github-mcp\",\"expected_users\":2000,\"time_slot\":\"peak\"}}}}'\n  servers:  curl -s http://{listen}/v1/servers -H 'Authorization: Bearer {token}'\n  stats:    curl -s http://{listen}/v1/stats -H 'Authorization: Bearer {token}'\n"
        ),
        Err(e) => format!("  api key:  could not be made ({e:#})\n"),
    };
    eprintln!(
        "\nmcpwatch demo: {} simulated MCP servers ({} h of history, then live every {} s)\n  \
         metrics:  curl http://{listen}/metrics\n  \
         ready:    curl http://{listen}/readyz\n  \
         anomalies: curl 'http://{listen}/v1/anomalies?min_score=0.3'\n  \
         query:    curl 'http://{listen}/v1/query?sql=SELECT%20service_id,count(*)%20FROM%20samples%20GROUP%20BY%201'\n  \
         store:    samples in embedded Arrow files in {} (archive: {}); API keys, anomalies: PostgreSQL\n  \
         stop:     Ctrl-C\n",
        args.servers,
        args.history_hours,
        args.live_step_secs,
        config.store.local_dir.display(),
        config.retention.archive_dir.display()
    );
    eprintln!("{key_line}");
    let result = crate::daemon::run(config, shutdown.clone()).await;
    shutdown.cancel();
    // the cluster must outlive the daemon's clients; drop it last
    drop(producer.join());
    result
}

/// Applies the migrations and makes an API key named `demo`.
async fn demo_key(config: &Config) -> anyhow::Result<String> {
    let pool = crate::store::pool(&config.store)?;
    crate::store::prepare(
        &pool,
        &config.store,
        &crate::store::Partitions::default(),
        crate::daemon::now_ms(),
    )
    .await?;
    Ok(crate::api::auth::create_key(&pool, "demo").await?.token)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One GET over a plain socket (the crate has no HTTP client): (status, body).
    async fn http_get(port: u16, path: &str, token: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
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
    }

    /// `mcpwatch demo` end to end: the embedded Kafka, cache and Arrow store; samples flow
    /// in, `/readyz` is ready, `/metrics` counts them, and `/v1/query` reads the stored rows
    /// back from the Arrow files. PostgreSQL holds only the API key the request needs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_stores_samples_in_the_embedded_store() {
        let root = std::env::temp_dir().join(format!("mcpwatch-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (pool, store) = crate::testing::fresh_store("demo_local").await;
        let token = crate::api::auth::create_key(&pool, "test")
            .await
            .unwrap()
            .token;
        let mut config = Config {
            store,
            ..Config::default()
        };
        config.http.listen = format!("127.0.0.1:{port}");
        config.store.local_dir = root.join("store");
        config.retention.archive_dir = root.join("archive");
        let shutdown = CancellationToken::new();
        // a failing assertion still stops the demo (its threads would keep the test alive)
        let _stop = shutdown.clone().drop_guard();
        let demo = tokio::spawn(run(
            config,
            DemoArgs {
                servers: 6,
                history_hours: 26,
                live_step_secs: 1,
            },
            shutdown.clone(),
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let stored = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the demo never stored the backfill"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Some((200, metrics)) = http_get(port, "/metrics", &token).await else {
                continue;
            };
            let stored: u64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix("mcpwatch_samples_stored_total "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            // 26 h of backfill every 15 min for 6 servers (624 messages, each one or more
            // samples), about 0.5 % malformed; and
            // every check ready (Kafka's comes with the first client statistics)
            if stored >= 600
                && http_get(port, "/readyz", &token)
                    .await
                    .is_some_and(|r| r.0 == 200)
            {
                break stored;
            }
        };
        let (_, ready) = http_get(port, "/readyz", &token).await.unwrap();
        assert!(ready.contains("\"store\":\"ok\""), "{ready}");
        let (status, body) = http_get(
            port,
            "/v1/query?sql=SELECT%20count(*)%20AS%20n%20FROM%20samples",
            &token,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["rows"][0]["n"].as_u64().unwrap() >= stored, "{body}");
        shutdown.cancel();
        demo.await.unwrap().unwrap();
        std::fs::remove_dir_all(&root).ok();
    }
}
