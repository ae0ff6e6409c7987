//! `mcpwatch run`: builds every stage from the config, starts them, and stops them in order
//! when SIGTERM or SIGINT arrives (the source flushes and commits, the writers drain, the
//! HTTP server finishes in-flight requests).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState, Readiness, ReadinessCheck};
use crate::cache::{self, CacheMetrics, CacheMode, CacheWriter, KeySpace};
use crate::config::Config;
use crate::downstream::{self, DownstreamArgs, DownstreamMetrics};
use crate::features::{FeatureEngine, SystemClock};
use crate::forecast::{ForecastContext, ForecastInput, ForecastMetrics, Forecaster};
use crate::ingest::{Pipeline, PipelineArgs};
use crate::store::{
    self, DurableSink, LocalStore, LocalStoreArgs, Partitions, StoreBackend, Writer, WriterArgs,
};
use crate::telemetry::Metrics;

/// Epoch milliseconds now. The one place the daemon reads the wall clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = Metrics::default();
    let pool = store::pool(&config.store)?;
    let partitions = Arc::new(Partitions::default());
    // the durable store: PostgreSQL, or the embedded Arrow store (no PostgreSQL at all)
    let local_store = match config.store.backend {
        StoreBackend::Local => Some(
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
        StoreBackend::Postgres => None,
    };
    let writer: Arc<dyn DurableSink> = match &local_store {
        Some(local) => {
            tracing::info!(dir = %config.store.local_dir.display(), "embedded store ready");
            Arc::new(local.clone())
        }
        None => {
            if config.store.migrate_on_start {
                let ran = store::prepare(&pool, &config.store, &partitions, now_ms())
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
    let downstream_metrics = DownstreamMetrics::default();
    let (downstream_tx, downstream_rx) = tokio::sync::mpsc::channel(64);
    let downstream = tokio::spawn(downstream::run(DownstreamArgs {
        batches: downstream_rx,
        engine: engine.clone(),
        cache: cache_writer.sender(),
        cache_reader: cache_backend.clone(),
        keys: KeySpace::new(&config.cache.key_prefix),
        metrics: downstream_metrics.clone(),
        shutdown: shutdown.clone(),
        clock: Arc::new(now_ms),
    }));

    // forecasts every active service on a cadence and keeps the latest hot
    let forecast_metrics = ForecastMetrics::default();
    let forecaster = Forecaster::new(
        config.forecast.clone(),
        config.features.bucket_width_secs,
        forecast_metrics.clone(),
    )
    .context("[forecast] section")?;
    let forecast_loop = tokio::spawn(forecast_loop(ForecastLoop {
        forecaster: forecaster.clone(),
        engine: engine.clone(),
        cache: cache_writer.sender(),
        keys: KeySpace::new(&config.cache.key_prefix),
        cadence: Duration::from_secs(config.forecast.cadence_secs),
        shutdown: shutdown.clone(),
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
    let maintenance = local_store.is_none().then(|| {
        let (pool, partitions, shutdown) = (pool.clone(), partitions.clone(), shutdown.clone());
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
        if let Some(local) = &local_store {
            return crate::lifecycle::LocalJobs {
                store: local.clone(),
                config: config.retention.clone(),
                shutdown: shutdown.clone(),
                clock,
            }
            .spawn();
        }
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
    let probe_pool = pool.clone();
    let store_check = match &local_store {
        Some(local) => {
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
        None => ReadinessCheck {
            name: "postgres",
            critical: true,
            probe: Box::new(move || {
                let pool = probe_pool.clone();
                Box::pin(async move { store::ping(&pool).await })
            }),
        },
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
    lifecycle_metrics.register(&mut registry);
    let state = ApiState {
        registry: Arc::new(registry),
        readiness: Arc::new(readiness),
        query: (config.retention.archive || local_store.is_some()).then(|| {
            let mut roots = Vec::new();
            if let Some(local) = &local_store {
                roots.push(local.root().to_path_buf());
            }
            if config.retention.archive {
                roots.push(config.retention.archive_dir.clone());
            }
            Arc::new(api::query::QueryState {
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
    tracing::info!("stopped cleanly");
    Ok(())
}

/// What the continuous forecast needs; owned by its task.
struct ForecastLoop {
    forecaster: Forecaster,
    /// Read (briefly locked) to gather each service's 24-bucket window.
    engine: crate::downstream::SharedEngine,
    /// Latest forecasts go to the cache's forecast tier (best effort).
    cache: crate::cache::CacheSender,
    keys: KeySpace,
    cadence: Duration,
    shutdown: CancellationToken,
}

/// Every `cadence`, forecasts every active service in batches and offers the results to the
/// cache, where `/plans` and the query endpoints read them.
async fn forecast_loop(l: ForecastLoop) {
    let mut tick = tokio::time::interval(l.cadence);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = l.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let inputs: Vec<ForecastInput> = {
            let engine = l.engine.lock().expect("feature engine poisoned");
            let ids: Vec<String> = engine.service_ids().map(str::to_string).collect();
            ids.iter()
                .filter_map(|id| {
                    ForecastInput::from_engine(&engine, id, ForecastContext::default())
                })
                .collect()
        };
        if inputs.is_empty() {
            continue;
        }
        let outputs = l.forecaster.forecast_all(inputs).await;
        let entries = outputs.iter().filter_map(|o| {
            let json = serde_json::to_vec(o).ok()?;
            Some(l.keys.entry(
                crate::cache::Tier::Forecast,
                &o.service_id,
                crate::cache::kind::FORECAST,
                json,
            ))
        });
        l.cache.offer_all(entries.collect::<Vec<_>>());
    }
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
