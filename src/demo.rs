//! `mcpwatch demo`: the daemon on an embedded default, for a laptop.
//!
//! Kafka is librdkafka's in-process mock cluster, fed by the built-in traffic
//! [generator](crate::generate) (first a backfill of recent history, then live samples);
//! the hot cache is the in-process [`MemoryCache`](crate::cache::MemoryCache) with the same
//! tiers; the durable store is the embedded [`LocalStore`](crate::store::LocalStore) (LZ4
//! Arrow IPC files in daily folders, the archive's format, queried with DataFusion: samples,
//! anomalies and the plans audit), so no external service is needed. Everything between them — ingest, features, forecasts, API —
//! is the production code started by [`daemon::run_with`](crate::daemon::run_with). The API
//! key the demo prints is made in memory for the run ([`DemoKey`]): there is no key table
//! without PostgreSQL, and nothing here connects to PostgreSQL.

use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cache::CacheBackend;
use crate::config::Config;
use crate::generate::{Traffic, TrafficArgs};
use crate::ingest::mock::MockKafka;

const TOPIC: &str = "mcp-metrics";
const DEAD_LETTERS: &str = "mcpwatch-dead-letter";
/// The generator's request rates × this: 4–140 requests per 30 minutes per server before the
/// daily cycle and bursts, the scale of the seed cluster the shipped model learned (median 28
/// events per 30-minute row). At the benches' full rates (100× more) every window would sit far
/// above the model's training range and its forecast would saturate at the clip bounds.
const REQUEST_SCALE: f64 = 0.002;

/// What the demo simulates.
#[derive(Debug, Clone)]
pub struct DemoArgs {
    pub servers: usize,
    /// Hours of history produced before going live (the forecaster needs 24 buckets).
    pub history_hours: i64,
    /// Seconds between two live samples of one server.
    pub live_step_secs: i64,
}

/// The demo's API key: random, held in memory by one run, never stored.
pub struct DemoKey {
    pub id: String,
    /// The bearer token (`mcpw_<id>_<secret>`), printed once at start.
    pub token: String,
    hash: [u8; 32],
}

impl DemoKey {
    pub fn generate() -> DemoKey {
        let (id, token, hash) = crate::api::auth::generate();
        DemoKey { id, token, hash }
    }
}

/// Starts the embedded Kafka and the generator, then runs the daemon until `shutdown`, with
/// a fresh API key.
pub async fn run(
    config: Config,
    args: DemoArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_key(config, args, DemoKey::generate(), shutdown).await
}

/// [`run`] with a given key (a test keeps the token to call the API with).
pub async fn run_with_key(
    mut config: Config,
    args: DemoArgs,
    key: DemoKey,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let kafka =
        MockKafka::new(&[(TOPIC, 4), (DEAD_LETTERS, 1)]).context("starting the embedded Kafka")?;
    config.kafka.brokers = kafka.brokers.clone();
    config.kafka.topics = vec![TOPIC.into()];
    config.kafka.dead_letter_topic = DEAD_LETTERS.into();
    config.kafka.statistics_interval_ms = 1000;
    // every demo starts a new cluster whose offsets restart at 0, while the store's checkpoint
    // keeps the offsets of earlier runs: a group of its own per run keeps them from being
    // skipped
    config.kafka.group_id = format!("{}-demo-{}", config.kafka.group_id, crate::daemon::now_ms());
    config.cache.backend = CacheBackend::Memory;
    // the embedded Arrow store: nothing connects to PostgreSQL (store.url is never used)
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
        request_scale: REQUEST_SCALE,
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
                request_scale: REQUEST_SCALE,
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
    let token = &key.token;
    let auth = format!("-H 'Authorization: Bearer {token}'");
    eprintln!(
        "\nmcpwatch demo: {} simulated MCP servers ({} h of history, then live every {} s)\n  \
         metrics:  curl http://{listen}/metrics\n  \
         ready:    curl http://{listen}/readyz\n  \
         api key:  {token}   (in memory, for this run only)\n  \
         plan:     curl -s -X POST http://{listen}/plans {auth} \\\n              \
         -H 'Content-Type: application/json' -d '{{\"service_id\":\"github-000\",\"metric_name\":\"total_events\",\"context\":{{\"github_url\":\"https://github.com/acme/github-mcp\",\"expected_users\":2000,\"time_slot\":\"peak\"}}}}'\n  \
         servers:  curl -s http://{listen}/v1/servers {auth}\n  \
         stats:    curl -s http://{listen}/v1/stats {auth}\n  \
         anomalies: curl -s 'http://{listen}/v1/anomalies?min_score=0.3' {auth}\n  \
         query:    curl -s 'http://{listen}/v1/query?sql=SELECT%20service_id,count(*)%20FROM%20samples%20GROUP%20BY%201' {auth}\n  \
         store:    embedded Arrow files in {} (samples, anomalies, plans; archive: {}); no PostgreSQL\n  \
         stop:     Ctrl-C\n",
        args.servers,
        args.history_hours,
        args.live_step_secs,
        config.store.local_dir.display(),
        config.retention.archive_dir.display()
    );
    let options = crate::daemon::RunOptions {
        api_keys: vec![(key.id, key.hash)],
    };
    let result = crate::daemon::run_with(config, shutdown.clone(), options).await;
    shutdown.cancel();
    // the cluster must outlive the daemon's clients; drop it last
    drop(producer.join());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::{http, http_get};

    fn stored_total(metrics: &str) -> u64 {
        crate::api::stats::metric_sum(metrics, "mcpwatch_samples_stored_total") as u64
    }

    /// `mcpwatch demo` end to end with no external service: PostgreSQL's URL points where
    /// nothing listens, so anything that tried to connect would fail or hang. The embedded
    /// Kafka, cache and Arrow store; samples flow in, `/readyz` is ready, `/metrics` counts
    /// them, `/v1/query` reads them back from the Arrow files, the demo's in-memory key opens
    /// the API, `POST /plans` answers with the LSTM's 24 points and is audited into the
    /// embedded store, and `/v1/anomalies` reads the embedded store's table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_serves_with_no_external_service() {
        let root = std::env::temp_dir().join(format!("mcpwatch-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let port = crate::testing::free_port();
        let mut config = Config::default();
        config.http.listen = format!("127.0.0.1:{port}");
        config.store.local_dir = root.join("store");
        // nothing listens here: the demo must not need PostgreSQL
        config.store.url = "postgres://nobody@127.0.0.1:1/none".into();
        config.retention.archive_dir = root.join("archive");
        let key = DemoKey::generate();
        let (token, key_id) = (key.token.clone(), key.id.clone());
        let shutdown = CancellationToken::new();
        // a failing assertion still stops the demo: without it the runtime's drop waits for
        // the demo's blocking tasks forever and the test hangs instead of failing
        let _stop = shutdown.clone().drop_guard();
        let mut demo = tokio::spawn(run_with_key(
            config,
            DemoArgs {
                servers: 6,
                history_hours: 26,
                live_step_secs: 1,
            },
            key,
            shutdown.clone(),
        ));
        let started = std::time::Instant::now();
        let deadline = started + Duration::from_secs(90);
        // the last answers seen, for the failure message
        let mut last = (None, None);
        let stored = loop {
            if demo.is_finished() {
                panic!("the demo stopped early: {:?}", (&mut demo).await);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the demo never stored the backfill or never got ready: \
                 last /metrics stored = {:?}, last /readyz = {:?}",
                last.0,
                last.1
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Some((200, metrics)) = http_get(port, "/metrics", &token).await else {
                continue;
            };
            let stored = stored_total(&metrics);
            let ready = http_get(port, "/readyz", &token).await;
            last = (Some(stored), ready.clone());
            // 26 h of backfill every 15 min for 6 servers (624 messages, each one or more
            // samples), about 0.5 % malformed; and every check ready (Kafka's comes with the
            // first client statistics)
            if stored >= 600 && ready.is_some_and(|r| r.0 == 200) {
                break stored;
            }
        };
        eprintln!("stored {stored} and ready after {:?}", started.elapsed());
        let (_, ready) = http_get(port, "/readyz", &token).await.unwrap();
        assert!(ready.contains("\"store\":\"ok\""), "{ready}");
        assert!(!ready.contains("postgres"), "{ready}");
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

        // the key is checked: another one is refused, the demo's opens the API
        let (other, _) = http_get(port, "/v1/stats", &DemoKey::generate().token)
            .await
            .unwrap();
        assert_eq!(other, 401);
        let (status, body) = http_get(port, "/v1/stats", &token).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["active_servers"].as_u64().unwrap() > 0, "{body}");

        // a plan for a demo server, by the LSTM once the forecast loop has its 24 buckets
        let request = r#"{"service_id":"github-000","metric_name":"total_events","context":{"github_url":"https://github.com/acme/github-mcp","expected_users":2000,"time_slot":"peak"}}"#;
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let plan = loop {
            let answer = http(port, "POST", "/plans", &token, request).await;
            if let Some((200, body)) = &answer {
                let v: serde_json::Value = serde_json::from_str(body).unwrap();
                let version = v["prediction"]["model_version"].as_str().unwrap_or("");
                if version.contains("lstm") {
                    break v;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no LSTM plan within 90 s; last answer: {answer:?}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        assert_eq!(
            plan["prediction"]["predictions"].as_array().unwrap().len(),
            24,
            "{plan}"
        );
        assert!(
            plan["recommended_flavor"].is_string() && plan["expected_cost_per_day"].is_number(),
            "{plan}"
        );

        // the samples counter keeps rising with the live traffic
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (_, metrics) = http_get(port, "/metrics", &token).await.unwrap();
            if stored_total(&metrics) > stored {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no live samples stored"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        // anomalies across services come from the embedded store's table (the detectors
        // learn 150 buckets first: the test's 52 have none to show yet)
        let (status, body) = http_get(port, "/v1/anomalies", &token).await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"source\":\"database\""), "{body}");
        let (status, body) = http_get(port, "/v1/anomalies?service=github-000", &token)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");

        // the plan was audited into the embedded store, with the demo key's id
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let answer = http_get(
                port,
                "/v1/query?sql=SELECT%20count(*)%20AS%20n,%20max(key_id)%20AS%20k%20FROM%20plans%20WHERE%20service_id%3D'github-000'",
                &token,
            )
            .await;
            if let Some((200, body)) = &answer {
                let v: serde_json::Value = serde_json::from_str(body).unwrap();
                if v["rows"][0]["n"].as_u64().unwrap_or(0) >= 1 {
                    assert_eq!(v["rows"][0]["k"], key_id.as_str(), "{body}");
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the plan was not audited: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        shutdown.cancel();
        demo.await.unwrap().unwrap();
        std::fs::remove_dir_all(&root).ok();
    }
}
