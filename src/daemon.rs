//! `mcpwatch run`: builds every stage from the config, starts them, and stops them in order
//! when SIGTERM or SIGINT arrives (the source flushes and commits, the writers drain, the
//! HTTP server finishes in-flight requests).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::alert::{AlertMetrics, Alerter, AlerterArgs};
use crate::anomaly::{
    AnomalyFeed, AnomalyMetrics, AnomalyStore, AnomalyTable, SinkArgs, StageArgs,
};
use crate::api::{self, ApiState, Readiness, ReadinessCheck};
use crate::cache::{self, CacheMetrics, CacheMode, CacheWriter, KeySpace};
use crate::config::Config;
use crate::downstream::{self, DownstreamArgs, DownstreamMetrics};
use crate::features::{FeatureEngine, SystemClock};
use crate::forecast::{self, ForecastCycleArgs, ForecastMetrics, ForecastStore, Forecaster};
use crate::ingest::{Pipeline, PipelineArgs};
use crate::store::{
    self, DurableSink, LocalStore, LocalStoreArgs, Partitions, StoreBackend, Writer, WriterArgs,
};
use crate::telemetry::Metrics;

/// At most this many samples are replayed from PostgreSQL per batch of services to rebuild.
const REBUILD_MAX_ROWS: i64 = 500_000;

/// Epoch milliseconds now. The one place the daemon reads the wall clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What an embedding (the demo) adds to a run beyond the config.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// API keys `(id, SHA-256 of the secret)` held in memory only, valid next to the key
    /// table's (if any) and never dropped by its refresh: the demo's key, which has no table
    /// to live in on the embedded store.
    pub api_keys: Vec<(String, [u8; 32])>,
}

/// The durable store a run writes to.
enum Durable {
    /// The embedded Arrow store (`store.backend = "local"`).
    Local(LocalStore),
    /// PostgreSQL (`store.backend = "postgres"`).
    Postgres(deadpool_postgres::Pool),
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with(config, shutdown, RunOptions::default()).await
}

/// [`run`] with what an embedding adds ([`RunOptions`]).
pub async fn run_with(
    config: Config,
    shutdown: CancellationToken,
    options: RunOptions,
) -> anyhow::Result<()> {
    let metrics = Metrics::default();
    let partitions = Arc::new(Partitions::default());
    // the durable store: PostgreSQL, or the embedded Arrow store (no PostgreSQL at all: no
    // pool is even built, and connecting is lazy, so nothing can connect to it)
    let durable = match config.store.backend {
        StoreBackend::Local => Durable::Local(
            LocalStore::open(LocalStoreArgs {
                root: config.store.local_dir.clone(),
                consumer_group: config.kafka.group_id.clone(),
                metrics: metrics.store.clone(),
            })
            .with_context(|| {
                format!(
                    "opening the embedded store at store.local_dir = {}",
                    config.store.local_dir.display()
                )
            })?,
        ),
        StoreBackend::Postgres => Durable::Postgres(store::pool(&config.store)?),
    };
    let (local_store, pg) = match &durable {
        Durable::Local(local) => (Some(local.clone()), None),
        // PostgreSQL for the stages that keep history there
        Durable::Postgres(pool) => (None, Some(pool.clone())),
    };
    let writer: Arc<dyn DurableSink> = match &durable {
        Durable::Local(local) => {
            tracing::info!(dir = %config.store.local_dir.display(), "embedded store ready");
            Arc::new(local.clone())
        }
        Durable::Postgres(pool) => {
            if config.store.migrate_on_start {
                let ran = store::prepare(pool, &config.store, &partitions, now_ms())
                    .await
                    .with_context(|| {
                        format!(
                            "preparing PostgreSQL at store.url (schema {})",
                            config.store.schema
                        )
                    })?;
                tracing::info!(migrations = ran, schema = %config.store.schema, "store ready");
            }
            Arc::new(Writer::new(WriterArgs {
                pool: pool.clone(),
                partitions: partitions.clone(),
                consumer_group: config.kafka.group_id.clone(),
                copy_rows: config.ingest.batch_rows,
                metrics: metrics.store.clone(),
            }))
        }
    };
    // hot cache: Redis (or in-process, or none); never blocks ingest
    let cache_metrics = Arc::new(CacheMetrics::new());
    let cache_backend = cache::open(&config.cache, cache_metrics.clone())
        .await
        .context("opening the hot cache ([cache] section)")?;
    let cache_writer = match &cache_backend {
        Some(backend) => {
            CacheWriter::start(backend.clone(), &config.cache, cache_metrics.clone()).await
        }
        None => CacheWriter::disabled(cache_metrics.clone()),
    };
    let engine = Arc::new(std::sync::Mutex::new(
        FeatureEngine::new(config.features.clone(), Arc::new(SystemClock))
            .context("[features] section")?,
    ));
    // anomaly detection: each closed bucket → detectors → the anomalies table, cache, alerts
    let alert_metrics = AlertMetrics::default();
    let alerter = Alerter::start(AlerterArgs {
        config: config.alert.clone(),
        metrics: alert_metrics.clone(),
        shutdown: shutdown.clone(),
        clock: Arc::new(now_ms),
    })
    .context("[alert] section")?;
    tracing::info!(
        discord = config.alert.discord_webhook_url.is_set(),
        alertmanager = config.alert.alertmanager_url.is_set(),
        running = alerter.is_running(),
        "alerting"
    );
    let anomaly_metrics = AnomalyMetrics::default();
    // the anomalies table: PostgreSQL's, or the embedded store's Arrow files
    let anomaly_table = match &durable {
        Durable::Local(local) => {
            AnomalyTable::local(local).context("opening the embedded store's anomalies table")?
        }
        Durable::Postgres(pool) => AnomalyTable::Postgres {
            pool: pool.clone(),
            partitions: partitions.clone(),
        },
    };
    let (anomaly_feed, anomaly_stage, anomaly_store) = if config.anomaly.enabled {
        let store = AnomalyStore::start(SinkArgs {
            table: anomaly_table.clone(),
            batch_rows: config.anomaly.store_batch_rows,
            flush_ms: config.anomaly.store_flush_ms,
            queue_rows: config.anomaly.store_queue_rows,
            metrics: anomaly_metrics.clone(),
            shutdown: shutdown.clone(),
        });
        let (feed, records) = AnomalyFeed::channel(config.anomaly.queue_records, &anomaly_metrics);
        let stage = tokio::spawn(crate::anomaly::stage::run(StageArgs {
            config: config.anomaly.clone(),
            resolve_after_ms: config.alert.rules().resolve_after_ms,
            records,
            sink: store.sink(),
            cache: cache_writer.sender(),
            keys: KeySpace::new(&config.cache.key_prefix),
            alerts: alerter.sender(),
            metrics: anomaly_metrics.clone(),
            clock: Arc::new(now_ms),
        }));
        (Some(feed), Some(stage), Some(store))
    } else {
        (None, None, None)
    };

    let downstream_metrics = DownstreamMetrics::default();
    let (downstream_tx, downstream_rx) = tokio::sync::mpsc::channel(64);
    let downstream = tokio::spawn(downstream::run(DownstreamArgs {
        batches: downstream_rx,
        engine: engine.clone(),
        cache: cache_writer.sender(),
        cache_reader: cache_backend.clone(),
        history: pg.clone().map(|pool| downstream::HistorySource {
            pool,
            lookback_ms: config.features.history_buckets as i64
                * config.features.bucket_width_secs as i64
                * 1000,
            max_rows: REBUILD_MAX_ROWS,
        }),
        keys: KeySpace::new(&config.cache.key_prefix),
        metrics: downstream_metrics.clone(),
        shutdown: shutdown.clone(),
        clock: Arc::new(now_ms),
        anomaly: anomaly_feed,
    }));

    // forecasts every active service on a cadence and keeps the latest hot
    let forecast_metrics = ForecastMetrics::default();
    let forecaster = Forecaster::new(
        config.forecast.clone(),
        config.features.bucket_width_secs,
        forecast_metrics.clone(),
    )
    .context("[forecast] section")?;
    let forecast_loop = tokio::spawn(forecast::run_cycles(ForecastCycleArgs {
        forecaster: forecaster.clone(),
        engine: engine.clone(),
        cache: cache_writer.sender(),
        keys: KeySpace::new(&config.cache.key_prefix),
        store: pg
            .clone()
            .map(|pool| ForecastStore::new(pool, partitions.clone())),
        bucket_width_secs: config.features.bucket_width_secs,
        cadence: Duration::from_secs(config.forecast.cadence_secs),
        shutdown: shutdown.clone(),
        clock: Arc::new(now_ms),
    }));

    let pipeline = Pipeline::start(PipelineArgs {
        kafka: config.kafka.clone(),
        ingest: config.ingest.clone(),
        writer,
        metrics: metrics.ingest.clone(),
        shutdown: shutdown.clone(),
        downstream: Some(downstream_tx),
        clock: Arc::new(now_ms),
    })
    .context("starting the Kafka source")?;

    // partitions for the days ahead, re-checked hourly
    let maintenance = pg.clone().map(|pool| {
        let (partitions, shutdown) = (partitions.clone(), shutdown.clone());
        let ahead = config.store.partitions_ahead_days;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        if let Ok(client) = pool.get().await {
                            if let Err(e) = partitions.ensure_ahead(&client, now_ms(), ahead).await {
                                tracing::warn!(error = %e, "could not create partitions ahead");
                            }
                        }
                    }
                }
            }
        })
    });

    // data lifecycle: aggregates, storage budget, retention (archive → verify → drop)
    let lifecycle_metrics = crate::lifecycle::LifecycleMetrics::default();
    let lifecycle = config.retention.enabled.then(|| {
        let clock: Arc<dyn Fn() -> i64 + Send + Sync> = Arc::new(now_ms);
        let pool = match &durable {
            Durable::Local(local) => {
                return crate::lifecycle::LocalJobs {
                    store: local.clone(),
                    config: config.retention.clone(),
                    shutdown: shutdown.clone(),
                    clock,
                }
                .spawn()
            }
            Durable::Postgres(pool) => pool,
        };
        crate::lifecycle::Jobs {
            retention: crate::lifecycle::Retention::new(crate::lifecycle::RetentionArgs {
                pool: pool.clone(),
                config: config.retention.clone(),
                partitions: partitions.clone(),
                partitions_ahead_days: config.store.partitions_ahead_days,
                metrics: lifecycle_metrics.clone(),
                clock: clock.clone(),
            }),
            aggregator: crate::lifecycle::Aggregator::new(crate::lifecycle::AggregatorArgs {
                pool: pool.clone(),
                config: config.retention.clone(),
                partitions: partitions.clone(),
                metrics: lifecycle_metrics.clone(),
                clock,
            }),
            config: config.retention.clone(),
            shutdown: shutdown.clone(),
        }
        .spawn()
    });

    let kafka_up = metrics.ingest.kafka_up.clone();
    let cache_status = cache_writer.status();
    let store_check = match &durable {
        Durable::Local(local) => {
            let root = local.root().to_path_buf();
            ReadinessCheck {
                name: "store",
                critical: true,
                probe: Box::new(move || {
                    let ok = root.join("samples").is_dir();
                    Box::pin(async move { ok })
                }),
            }
        }
        Durable::Postgres(pool) => {
            let pool = pool.clone();
            ReadinessCheck {
                name: "postgres",
                critical: true,
                probe: Box::new(move || {
                    let pool = pool.clone();
                    Box::pin(async move { store::ping(&pool).await })
                }),
            }
        }
    };
    let readiness = Readiness {
        checks: vec![
            store_check,
            ReadinessCheck {
                name: "cache",
                critical: false,
                probe: Box::new(move || {
                    let mode = *cache_status.borrow();
                    Box::pin(async move { mode != CacheMode::Degraded })
                }),
            },
            ReadinessCheck {
                name: "kafka",
                critical: true,
                probe: Box::new(move || {
                    let up = kafka_up.get() == 1;
                    Box::pin(async move { up })
                }),
            },
        ],
    };
    let mut registry = metrics.registry();
    cache_metrics.register(&mut registry);
    downstream_metrics.register(&mut registry);
    forecast_metrics.register(&mut registry);
    anomaly_metrics.register(&mut registry);
    alert_metrics.register(&mut registry);
    lifecycle_metrics.register(&mut registry);
    let api_metrics = api::metrics::ApiMetrics::default();
    api_metrics.register(&mut registry);
    // API keys: the whole table in memory, re-read every api.key_refresh_ms, plus the
    // embedding's keys (on the embedded store there is no table: those are all there is)
    if pg.is_none() && options.api_keys.is_empty() && config.api.auth {
        tracing::warn!(
            "store.backend = \"local\" has no API key table: every keyed route answers 401 \
             (run `mcpwatch demo`, which makes a key, or set api.auth = false)"
        );
    }
    let key_cache = Arc::new(
        api::auth::KeyCache::new(pg.clone(), Duration::from_millis(config.api.key_refresh_ms))
            .with_fixed_keys(options.api_keys),
    );
    let key_refresher = tokio::spawn(key_cache.clone().run_refresher(shutdown.clone()));
    // plans audit: a bounded queue and one batched writer, off the request path, into the
    // plans table (PostgreSQL's, or the embedded store's)
    let (audit, audit_writer) = if config.api.audit {
        let table = match &durable {
            Durable::Local(local) => api::audit::AuditTable::local(local)
                .context("opening the embedded store's plans table")?,
            Durable::Postgres(pool) => api::audit::AuditTable::Postgres {
                pool: pool.clone(),
                partitions: partitions.clone(),
            },
        };
        let (sender, task) = api::audit::start(api::audit::AuditArgs {
            table,
            queue: config.api.audit_queue,
            batch: config.api.audit_batch,
            metrics: api_metrics.clone(),
        });
        (Some(sender), Some(task))
    } else {
        (None, None)
    };
    // forecast anomalies flagged by POST /plans go to the alerter (and are counted in
    // mcpwatch_plan_anomalies_total either way)
    let forecast_anomalies = Some(forecast_anomaly_bridge(alerter.sender(), shutdown.clone()));
    let core = api::ApiCore::new(
        api::ApiCoreArgs {
            config: config.api.clone(),
            engine: engine.clone(),
            bucket_width_secs: config.features.bucket_width_secs,
            forecaster: forecaster.clone(),
            cache: cache_backend.clone(),
            cache_metrics: cache_metrics.clone(),
            keys: KeySpace::new(&config.cache.key_prefix),
            pool: pg.clone(),
            auth: key_cache,
            audit,
            anomalies: forecast_anomalies,
            metrics: api_metrics,
            ingest: Some(metrics.ingest.clone()),
            clock: Arc::new(now_ms),
            micros: api::ratelimit::monotonic_micros(),
        },
        Some(&cache_writer),
    )
    .context("[forecast.routes] for the API")?;
    let state = ApiState {
        registry: Arc::new(registry),
        readiness: Arc::new(readiness),
        core: Arc::new(core),
        http: config.http.clone(),
        anomalies: config.anomaly.enabled.then(|| api::anomalies::AnomalyApi {
            table: Some(anomaly_table.clone()),
            cache: cache_backend.clone(),
            keys: KeySpace::new(&config.cache.key_prefix),
            clock: Arc::new(now_ms),
        }),
        sql: (config.retention.archive || local_store.is_some()).then(|| {
            let mut roots = Vec::new();
            if let Some(local) = &local_store {
                roots.push(local.root().to_path_buf());
            }
            if config.retention.archive {
                roots.push(config.retention.archive_dir.clone());
            }
            Arc::new(api::sql::QueryState {
                roots,
                max_rows: config.retention.query_max_rows,
                timeout: Duration::from_secs(config.retention.query_timeout_secs),
            })
        }),
    };
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("binding http.listen = {}", config.http.listen))?;
    tracing::info!(addr = %config.http.listen, "serving HTTP");
    let http_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, api::app(state))
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
    });

    pipeline.join().await.context("ingest pipeline")?;
    downstream.await.context("features stage")?;
    if let Some(stage) = anomaly_stage {
        stage
            .await
            .context("anomaly stage")?
            .context("anomaly stage")?;
    }
    if let Some(store) = anomaly_store {
        store.close().await;
    }
    alerter.close().await;
    forecast_loop.await.context("forecast loop")?;
    let cache_stats = cache_writer.close().await;
    tracing::info!(?cache_stats, "cache writer closed");
    if let Some(maintenance) = maintenance {
        maintenance.await.ok();
    }
    if let Some(lifecycle) = lifecycle {
        lifecycle.await.ok();
    }
    server
        .await
        .context("http server task")?
        .context("http server")?;
    key_refresher.await.ok();
    // the server's state (and with it every audit sender) is gone: the writer drains and stops
    if let Some(task) = audit_writer {
        if tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .is_err()
        {
            tracing::warn!("plans audit writer did not drain within 10 s");
        }
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Forwards the forecast anomalies `POST /plans` flags to the alerter (de-duplicated there like
/// any anomaly), from a bounded queue the handlers `try_send` into. The task ends at shutdown.
fn forecast_anomaly_bridge(
    alerts: crate::alert::AlertSender,
    shutdown: CancellationToken,
) -> tokio::sync::mpsc::Sender<crate::forecast::policy::ForecastAnomaly> {
    use crate::alert::{AlertEvent, Anomaly, AnomalySource, Severity};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<crate::forecast::policy::ForecastAnomaly>(256);
    tokio::spawn(async move {
        loop {
            let a = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = rx.recv() => match a { Some(a) => a, None => break },
            };
            // z at the threshold scores 0.5 (as the streaming detectors' alert line); twice it, 1
            let score = (0.5 * a.z_score / a.threshold.max(f64::EPSILON)).clamp(0.0, 1.0);
            alerts.send(AlertEvent::ForecastAnomaly(Anomaly {
                service_id: a.service_id.clone(),
                metric: a.metric_name.clone(),
                source: AnomalySource::Forecast,
                ts_ms: a.value_at_ms,
                score,
                value: a.value,
                expected: Some(a.history_mean),
                severity: if a.z_score >= 2.0 * a.threshold {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                detector: a.model_version.clone(),
                message: Some(format!(
                    "forecast by {} reaches {:.1} (z = {:.1} against a history mean of {:.1} ± {:.1} over {} points)",
                    a.model_version, a.value, a.z_score, a.history_mean, a.history_std, a.history_points
                )),
            }));
        }
    });
    tx
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received");
        token.cancel();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheBackend;
    use crate::generate::{Traffic, TrafficArgs};
    use crate::testing::{count, free_port, fresh_store, http, http_get, MockKafka};

    /// The daemon on PostgreSQL, wired as on the embedded store but with every table there:
    /// ready with the `postgres` check, a key from the table and a key the embedding passed
    /// (`RunOptions`) both open the API, a plan is audited into PostgreSQL's `plans` table with
    /// its caller's key id, and `/v1/anomalies` reads PostgreSQL's `anomalies` table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_daemon_on_postgres_keeps_keys_audit_and_anomalies_there() {
        let (pool, store) = fresh_store("daemon_pg").await;
        let table_key = crate::api::auth::create_key(&pool, "table").await.unwrap();
        let (fixed_id, fixed_token, fixed_hash) = crate::api::auth::generate();
        let kafka = MockKafka::new(&[("metrics", 2), ("dead", 1)]).unwrap();
        let now = now_ms();
        let messages: Vec<(String, Vec<u8>)> = Traffic::new(TrafficArgs {
            services: 3,
            samples: usize::MAX,
            malformed_ratio: 0.0,
            start_ms: now - 12 * 3_600_000,
            step_ms: 600_000,
            ..TrafficArgs::default()
        })
        .take(3 * 72)
        .map(|m| (m.key, m.payload))
        .collect();
        kafka.produce("metrics", &messages).unwrap();

        let port = free_port();
        let mut config = Config {
            store,
            ..Config::default()
        };
        config.kafka.brokers = kafka.brokers.clone();
        config.kafka.topics = vec!["metrics".into()];
        config.kafka.dead_letter_topic = "dead".into();
        config.kafka.statistics_interval_ms = 1000;
        config.kafka.group_id = format!("daemon-pg-{now}");
        config.cache.backend = CacheBackend::Memory;
        config.http.listen = format!("127.0.0.1:{port}");
        config.retention.enabled = false;
        let shutdown = CancellationToken::new();
        // a failing assertion still stops the daemon (its blocking tasks would keep the
        // runtime's drop waiting forever)
        let _stop = shutdown.clone().drop_guard();
        let mut daemon = tokio::spawn(run_with(
            config,
            shutdown.clone(),
            RunOptions {
                api_keys: vec![(fixed_id.clone(), fixed_hash)],
            },
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut last = None;
        loop {
            if daemon.is_finished() {
                panic!("the daemon stopped early: {:?}", (&mut daemon).await);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never ready with the samples stored; last /readyz: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            let ready = http_get(port, "/readyz", "").await;
            let stored = count(&pool, "SELECT count(*) FROM samples").await;
            if stored > 0 && ready.as_ref().is_some_and(|r| r.0 == 200) {
                assert!(ready.unwrap().1.contains("\"postgres\":\"ok\""));
                break;
            }
            last = ready;
        }

        // both keys open the API; another is refused
        for token in [&table_key.token, &fixed_token] {
            let (status, body) = http_get(port, "/v1/stats", token).await.unwrap();
            assert_eq!(status, 200, "{body}");
        }
        let (_, other, _) = crate::api::auth::generate();
        assert_eq!(http_get(port, "/v1/stats", &other).await.unwrap().0, 401);

        // a plan, audited into PostgreSQL with the embedding's key id
        let request = r#"{"service_id":"github-000","metric_name":"total_events","context":{"github_url":"https://github.com/acme/github-mcp"}}"#;
        let (status, body) = http(port, "POST", "/plans", &fixed_token, request)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while count(
            &pool,
            &format!("SELECT count(*) FROM plans WHERE key_id = '{fixed_id}'"),
        )
        .await
            == 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the plan was not audited"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // anomalies across services: PostgreSQL's table answers
        let (status, body) = http_get(port, "/v1/anomalies", &table_key.token)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"source\":\"database\""), "{body}");

        shutdown.cancel();
        daemon.await.unwrap().unwrap();
    }
}
