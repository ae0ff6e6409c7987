//! `mcpwatch demo`: the daemon on an embedded default, for a laptop.
//!
//! Kafka is librdkafka's in-process mock cluster, fed by the built-in traffic
//! [generator](crate::generate) (first a backfill of recent history, then live samples);
//! the hot cache is the in-process [`MemoryCache`](crate::cache::MemoryCache) with the same
//! tiers. Everything between them — ingest, store, features, API — is the production code
//! started by [`daemon::run`](crate::daemon::run).

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
         store:    PostgreSQL {} (schema {})\n  \
         stop:     Ctrl-C\n",
        args.servers,
        args.history_hours,
        args.live_step_secs,
        config.store.url,
        config.store.schema
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
