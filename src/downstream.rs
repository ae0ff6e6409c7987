//! The stage after the store: every durable batch is folded into the feature engine, and the
//! hot windows (latest sample, closed buckets, feature vectors) are offered to the cache.
//!
//! Sits between **store** (which hands over samples only once they are committed, so the
//! engine never counts a sample that could still be replayed) and forecast / anomaly / api,
//! which read the engine's windows. The engine has one owner, this stage; readers lock it
//! briefly through [`SharedEngine`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::anomaly::BucketRecord;
use crate::cache::{kind, CacheSender, HotCache, KeySpace, SampleView, Tier};
use crate::features::{ClosedBucket, FeatureEngine, ManualClock, FEATURE_NAMES};
use crate::sample::Sample;
use crate::store::read::{samples_in, SampleRange};

/// The feature engine, shared: written by [`run`], read by the forecaster and the API.
pub type SharedEngine = Arc<Mutex<FeatureEngine>>;

/// The stage's figures, updated once per batch.
#[derive(Clone, Default)]
pub struct DownstreamMetrics {
    pub batches: Counter,
    pub buckets_closed: Counter,
    pub active_services: Gauge,
    pub evicted_services: Counter,
    pub restored_services: Counter,
    pub rebuilt_services: Counter,
    pub rebuilt_samples: Counter,
    pub rebuild_errors: Counter,
    pub engine_bytes: Gauge,
    pub late_dropped: Gauge,
}

impl DownstreamMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "mcpwatch_features_batches",
            "Durable batches folded into the feature engine",
            self.batches.clone(),
        );
        r.register(
            "mcpwatch_features_buckets_closed",
            "Buckets closed (gap fills included)",
            self.buckets_closed.clone(),
        );
        r.register(
            "mcpwatch_active_servers",
            "Services with rolling state in this replica",
            self.active_services.clone(),
        );
        r.register(
            "mcpwatch_features_evicted",
            "Idle services evicted (snapshot kept in the cache)",
            self.evicted_services.clone(),
        );
        r.register(
            "mcpwatch_features_restored",
            "Returning services rebuilt from their cached snapshot",
            self.restored_services.clone(),
        );
        r.register(
            "mcpwatch_features_rebuilt",
            "Services without a snapshot rebuilt from their recent samples in PostgreSQL",
            self.rebuilt_services.clone(),
        );
        r.register(
            "mcpwatch_features_rebuilt_samples",
            "Samples replayed from PostgreSQL to rebuild services",
            self.rebuilt_samples.clone(),
        );
        r.register(
            "mcpwatch_features_rebuild_errors",
            "Rebuilds from PostgreSQL that failed (those services started empty)",
            self.rebuild_errors.clone(),
        );
        r.register_with_unit(
            "mcpwatch_features_state",
            "Memory held by the feature engine",
            prometheus_client::registry::Unit::Bytes,
            self.engine_bytes.clone(),
        );
        r.register(
            "mcpwatch_features_late_dropped",
            "Samples that arrived after their bucket closed (stored, not folded in)",
            self.late_dropped.clone(),
        );
    }
}

/// Constructor arguments for [`run`].
pub struct DownstreamArgs {
    /// Durable batches from the ingest writers.
    pub batches: mpsc::Receiver<Arc<Vec<Sample>>>,
    pub engine: SharedEngine,
    /// Best-effort cache writes; never blocks.
    pub cache: CacheSender,
    /// Cache reads, to rebuild a returning service from its snapshot (None: no cache).
    pub cache_reader: Option<Arc<dyn HotCache>>,
    /// PostgreSQL, to rebuild a service that has no snapshot (None: start such services empty).
    pub history: Option<HistorySource>,
    pub keys: KeySpace,
    pub metrics: DownstreamMetrics,
    pub shutdown: CancellationToken,
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// Each closed bucket goes to the anomaly detection stage (`try_send`: dropped and counted
    /// when that stage is behind, never waited on). `None`: detection is off. The buckets a
    /// rebuild from PostgreSQL closes go there too, as history the detectors only learn from
    /// ([`crate::anomaly::AnomalyFeed::offer_history`]).
    pub anomaly: Option<crate::anomaly::AnomalyFeed>,
}

/// Where a service this replica does not hold is rebuilt from when the cache has no snapshot
/// of it: its recent samples in PostgreSQL, replayed through the engine.
#[derive(Clone)]
pub struct HistorySource {
    /// The daemon's PostgreSQL pool (only read here).
    pub pool: deadpool_postgres::Pool,
    /// How far back to replay: the engine's history (`history_buckets` × bucket width).
    pub lookback_ms: i64,
    /// At most this many samples per rebuild query (the newest win).
    pub max_rows: i64,
}

/// A closed bucket as the cache and the API show it.
#[derive(Serialize)]
struct BucketView<'a> {
    start_ms: i64,
    width_ms: i64,
    total_events: f64,
    gap_filled: bool,
    samples: u64,
    avg_response_ms: Option<f64>,
    max_response_ms: Option<f64>,
    errors: f64,
    worst_status: Option<&'static str>,
    aggregates: HashMap<&'a str, f32>,
}

fn bucket_entry(keys: &KeySpace, b: &ClosedBucket) -> crate::cache::Entry {
    let view = BucketView {
        start_ms: b.start_ms,
        width_ms: b.width_ms,
        total_events: b.row.total_events,
        gap_filled: b.gap_filled,
        samples: u64::from(b.extras.samples),
        avg_response_ms: b.extras.avg_response_ms,
        max_response_ms: b.extras.max_response_ms,
        errors: b.extras.errors,
        worst_status: b.extras.worst_status.map(|s| s.as_str()),
        aggregates: FEATURE_NAMES[..14]
            .iter()
            .copied()
            .zip(b.row.aggregates)
            .collect(),
    };
    let json = serde_json::to_vec(&view).unwrap_or_default();
    keys.entry(Tier::Hourly, &b.service_id, kind::HOURLY, json)
}

/// The realtime tier lives 15 s; refreshing a service's latest sample more often than this
/// only costs Redis round trips.
const LATEST_REFRESH_MS: i64 = 1000;

/// Folds batches into the engine until the ingest side closes, then returns.
pub async fn run(mut args: DownstreamArgs) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    // when each service's latest sample was last offered to the cache (wall clock ms)
    let mut offered: HashMap<String, i64> = HashMap::new();
    loop {
        tokio::select! {
            batch = args.batches.recv() => match batch {
                Some(batch) => {
                    restore_returning(&args, &batch).await;
                    fold(&args, &batch, &mut offered);
                }
                None => break,
            },
            _ = tick.tick() => {
                maintain(&args);
                let horizon = (args.clock)() - 60_000;
                offered.retain(|_, t| *t > horizon);
            }
            _ = args.shutdown.cancelled(), if args.batches.is_closed() => break,
        }
    }
}

/// Services this replica does not hold (new, evicted while idle, or handed over by a Kafka
/// rebalance) are rebuilt from their snapshot in the cache when there is one, else from their
/// recent samples in PostgreSQL (the batch itself is already durable there, so only what came
/// before it is replayed).
///
/// The buckets such a replay closes warm the anomaly detectors (offered as history, before
/// the batch's own buckets, so they reach the stage first). A service restored from a snapshot
/// whose detectors the anomaly stage does not hold (after a restart, or evicted there too) is
/// replayed as well, through a scratch engine, for the detectors only.
async fn restore_returning(args: &DownstreamArgs, batch: &[Sample]) {
    // each missing service with the time of its first sample in this batch
    let mut missing: Vec<(String, i64)> = {
        let engine = args.engine.lock().expect("feature engine poisoned");
        let mut first: HashMap<&str, i64> = HashMap::new();
        for s in batch.iter().filter(|s| !engine.contains(&s.service_id)) {
            let t = first.entry(s.service_id.as_str()).or_insert(s.ts_ms);
            *t = (*t).min(s.ts_ms);
        }
        first
            .into_iter()
            .map(|(id, t)| (id.to_string(), t))
            .collect()
    };
    if missing.is_empty() {
        return;
    }
    missing.sort_unstable();
    // restored from a snapshot, but with cold detectors: replayed for the anomaly stage only
    let mut cold: Vec<(String, i64)> = Vec::new();
    if let Some(cache) = args.cache_reader.as_ref().filter(|c| c.is_available()) {
        let keys: Vec<String> = missing
            .iter()
            .map(|(id, _)| args.keys.key(Tier::Features, id, "snapshot"))
            .collect();
        if let Ok(found) = cache.get_many(&keys).await {
            let mut engine = args.engine.lock().expect("feature engine poisoned");
            for ((id, _), snapshot) in missing.iter().zip(found) {
                let Some(bytes) = snapshot else { continue };
                match engine.restore(id, &bytes) {
                    Ok(()) => {
                        args.metrics.restored_services.inc();
                    }
                    Err(e) => {
                        tracing::warn!(service = %id, error = %e, "ignoring an unreadable feature snapshot")
                    }
                }
            }
            let (restored, rest): (Vec<_>, Vec<_>) =
                missing.into_iter().partition(|(id, _)| engine.contains(id));
            missing = rest;
            if let Some(feed) = &args.anomaly {
                cold = restored
                    .into_iter()
                    .filter(|(id, _)| !feed.holds(id))
                    .collect();
            }
        }
    }
    if let Some(history) = &args.history {
        if !missing.is_empty() || !cold.is_empty() {
            rebuild_from_store(args, history, &missing, &cold).await;
        }
    }
}

/// Replays the samples of `missing` (rebuilt in the engine) and `cold` (already restored from
/// a snapshot: replayed through a scratch engine) from before their first sample in the batch
/// out of PostgreSQL, and offers the buckets the replays closed to the anomaly stage as
/// history, one queue slot per service the stage does not hold yet.
async fn rebuild_from_store(
    args: &DownstreamArgs,
    h: &HistorySource,
    missing: &[(String, i64)],
    cold: &[(String, i64)],
) {
    let ranges: Vec<SampleRange> = missing
        .iter()
        .chain(cold)
        .map(|(id, first)| SampleRange {
            service_id: id.clone(),
            from_ms: first.saturating_sub(h.lookback_ms),
            until_ms: *first,
        })
        .collect();
    let read = async {
        let client = h.pool.get().await?;
        samples_in(&client, &ranges, h.max_rows).await
    };
    match read.await {
        Ok(samples) if !samples.is_empty() => {
            let cold_ids: std::collections::HashSet<&str> =
                cold.iter().map(|(id, _)| id.as_str()).collect();
            let (warm_only, replay): (Vec<Sample>, Vec<Sample>) = samples
                .into_iter()
                .partition(|s| cold_ids.contains(s.service_id.as_str()));
            // the replays' closed buckets were offered live when they first closed (before a
            // restart, or by the replica that held the service): now they are history
            let mut closed = Vec::new();
            {
                let mut engine = args.engine.lock().expect("feature engine poisoned");
                if !replay.is_empty() {
                    closed = engine.observe_batch(&replay);
                    let rebuilt = missing.iter().filter(|(id, _)| engine.contains(id)).count();
                    args.metrics.rebuilt_services.inc_by(rebuilt as u64);
                    args.metrics.rebuilt_samples.inc_by(replay.len() as u64);
                }
                if !warm_only.is_empty() && args.anomaly.is_some() {
                    let clock = Arc::new(ManualClock::new((args.clock)()));
                    match FeatureEngine::new(engine.config().clone(), clock) {
                        Ok(mut scratch) => closed.extend(scratch.observe_batch(&warm_only)),
                        Err(e) => tracing::warn!(error = %e, "no scratch engine to warm detectors"),
                    }
                }
            }
            if let Some(feed) = &args.anomaly {
                offer_history(feed, &closed);
            }
        }
        Ok(_) => {}
        Err(e) => {
            args.metrics.rebuild_errors.inc();
            tracing::warn!(error = %e, services = missing.len(), "could not rebuild services from PostgreSQL; they start empty");
        }
    }
}

/// Offers replayed closed buckets (grouped by service, oldest first, as a replay closes them)
/// to the anomaly stage as history, one queue slot per service it does not hold. Called before
/// the batch's own buckets are offered, from the same task, so each history is queued ahead of
/// its service's live buckets; a history that finds the queue half full is dropped and counted
/// (ingest never waits) and that service warms up on its live buckets.
fn offer_history(feed: &crate::anomaly::AnomalyFeed, closed: &[ClosedBucket]) {
    for service in closed.chunk_by(|a, b| a.service_id == b.service_id) {
        if feed.holds(&service[0].service_id) {
            continue;
        }
        feed.offer_history(service.iter().map(BucketRecord::from_closed).collect());
    }
}

fn fold(args: &DownstreamArgs, batch: &[Sample], offered: &mut HashMap<String, i64>) {
    // newest sample per service goes to the realtime tier, at most once a second each
    let now = (args.clock)();
    let mut latest: HashMap<&str, &Sample> = HashMap::new();
    for s in batch {
        if offered
            .get(s.service_id.as_str())
            .is_some_and(|t| now - t < LATEST_REFRESH_MS)
        {
            continue;
        }
        latest
            .entry(s.service_id.as_str())
            .and_modify(|l| {
                if s.ts_ms >= l.ts_ms {
                    *l = s
                }
            })
            .or_insert(s);
    }
    let mut entries: Vec<crate::cache::Entry> = latest
        .values()
        .map(|s| SampleView::latest_entry(s, &args.keys))
        .collect();
    let closed = {
        let mut engine = args.engine.lock().expect("feature engine poisoned");
        let closed = engine.observe_batch(batch);
        for b in &closed {
            entries.push(bucket_entry(&args.keys, b));
            if let Some(feed) = &args.anomaly {
                feed.offer(b);
            }
        }
        let mut seen = std::collections::HashSet::new();
        for b in &closed {
            if seen.insert(b.service_id.clone()) {
                if let Some(v) = engine.features(&b.service_id) {
                    let json = serde_json::to_vec(&v[..]).unwrap_or_default();
                    entries.push(args.keys.entry(
                        Tier::Features,
                        &b.service_id,
                        kind::FEATURES,
                        json,
                    ));
                }
            }
        }
        args.metrics.active_services.set(engine.len() as i64);
        args.metrics
            .late_dropped
            .set(engine.stats().late_dropped as i64);
        closed.len()
    };
    args.metrics.batches.inc();
    args.metrics.buckets_closed.inc_by(closed as u64);
    args.cache.offer_all(entries);
}

/// Closes the buckets of quiet services and evicts idle ones (their snapshot goes to the
/// cache's features tier, from where a returning service is rebuilt).
fn maintain(args: &DownstreamArgs) {
    let now = (args.clock)();
    let mut entries = Vec::new();
    let mut engine = args.engine.lock().expect("feature engine poisoned");
    for b in engine.advance_to(now) {
        entries.push(bucket_entry(&args.keys, &b));
        if let Some(feed) = &args.anomaly {
            feed.offer(&b);
        }
    }
    let evicted = engine.evict_idle();
    args.metrics.evicted_services.inc_by(evicted.len() as u64);
    for e in evicted {
        entries.push(
            args.keys
                .entry(Tier::Features, &e.service_id, "snapshot", e.snapshot),
        );
    }
    args.metrics.active_services.set(engine.len() as i64);
    args.metrics.engine_bytes.set(engine.memory_bytes() as i64);
    drop(engine);
    args.cache.offer_all(entries);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheConfig, CacheMetrics, CacheWriter, RedisCache};
    use crate::features::{Clock, FeaturesConfig, ManualClock};
    use crate::sample::Origin;

    const HOUR: i64 = 3_600_000;

    fn sample(service: &str, ts_ms: i64, requests: f64) -> Sample {
        let mut s = Sample::new(service, ts_ms, Origin::Mcp);
        s.requests = Some(requests);
        s.cpu = Some(0.5);
        s.instance_id = Some("i-1".into());
        s
    }

    /// Durable batches reach the engine and the real Redis; an evicted service comes back
    /// from its snapshot with its history intact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_feed_engine_and_cache_and_returning_services_are_restored() {
        let url = std::env::var("MCPWATCH_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let config = CacheConfig {
            url,
            key_prefix: format!("mcpwatch-test-downstream-{}", std::process::id()),
            ..CacheConfig::default()
        };
        let metrics = Arc::new(CacheMetrics::new());
        let redis: Arc<dyn HotCache> =
            Arc::new(RedisCache::connect(&config, metrics.clone()).await.unwrap());
        let writer = CacheWriter::start(redis.clone(), &config, metrics.clone()).await;
        let start = 1_763_683_200_000; // a bucket boundary
        let clock = Arc::new(ManualClock::new(start));
        let engine: SharedEngine = Arc::new(Mutex::new(
            FeatureEngine::new(FeaturesConfig::default(), clock.clone()).unwrap(),
        ));
        let (tx, rx) = mpsc::channel(4);
        let keys = KeySpace::new(&config.key_prefix);
        let shutdown = CancellationToken::new();
        let stage_clock = clock.clone();
        let stage = tokio::spawn(run(DownstreamArgs {
            batches: rx,
            engine: engine.clone(),
            cache: writer.sender(),
            cache_reader: Some(redis.clone()),
            history: None,
            keys: keys.clone(),
            metrics: DownstreamMetrics::default(),
            shutdown: shutdown.clone(),
            clock: Arc::new(move || stage_clock.now_ms()),
            anomaly: None,
        }));
        // 30 hours of one sample per hour
        for h in 0..30 {
            clock.set(start + h * HOUR + 60_000);
            tx.send(Arc::new(vec![sample(
                "fs-1",
                start + h * HOUR,
                10.0 + h as f64,
            )]))
            .await
            .unwrap();
        }
        // wait until the stage folded everything
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.lock().unwrap().stats().samples < 30 {
            assert!(
                std::time::Instant::now() < deadline,
                "stage did not fold the batches"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = engine.lock().unwrap().features("fs-1").unwrap();

        // the cache holds the latest sample and the last closed bucket
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let latest = redis
                .get(&keys.key(Tier::Realtime, "fs-1", kind::LATEST))
                .await
                .unwrap();
            let hourly = redis
                .get(&keys.key(Tier::Hourly, "fs-1", kind::HOURLY))
                .await
                .unwrap();
            if latest.is_some() && hourly.is_some() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "cache entries never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // evict (as after an idle period) and put the snapshot where the stage would
        let snapshot = engine.lock().unwrap().snapshot("fs-1").unwrap();
        engine.lock().unwrap().remove("fs-1");
        redis
            .put_batch(&[keys.entry(Tier::Features, "fs-1", "snapshot", snapshot)])
            .await
            .unwrap();
        // the service returns within its current bucket: rebuilt, not started from scratch
        tx.send(Arc::new(vec![sample(
            "fs-1",
            start + 29 * HOUR + 120_000,
            1.0,
        )]))
        .await
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.lock().unwrap().stats().samples < 31 {
            assert!(
                std::time::Instant::now() < deadline,
                "the returning sample was not folded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            engine.lock().unwrap().window("fs-1").map(|w| w.len()),
            Some(24),
            "history restored"
        );
        assert_eq!(engine.lock().unwrap().features("fs-1").unwrap(), before);

        drop(tx);
        shutdown.cancel();
        stage.await.unwrap();
        writer.close().await;
    }

    /// Commits `history` to PostgreSQL the way ingest does (one batch, its offsets with it).
    async fn store_history(pool: &deadpool_postgres::Pool, history: &[Sample]) {
        use crate::store::{PartitionOffset, Partitions, StoreMetrics, Writer, WriterArgs};
        Writer::new(WriterArgs {
            pool: pool.clone(),
            partitions: Arc::new(Partitions::default()),
            consumer_group: "g".into(),
            copy_rows: 1000,
            metrics: StoreMetrics::default(),
        })
        .write(
            history,
            &[PartitionOffset {
                topic: "t".into(),
                partition: 0,
                next: history.len() as i64,
            }],
        )
        .await
        .unwrap();
    }

    /// A service with no snapshot anywhere (e.g. handed over by a rebalance after its
    /// snapshot expired) is rebuilt from its samples in PostgreSQL, to exactly the state the
    /// live stream would have built.
    #[tokio::test]
    async fn a_service_without_snapshot_is_rebuilt_from_postgres() {
        let (pool, _) = crate::testing::fresh_store("downstream_rebuild").await;
        let start = 1_763_683_200_000;
        let history: Vec<Sample> = (0..30 * 4)
            .map(|q| sample("svc", start + q * HOUR / 4, (q % 7) as f64))
            .collect();
        store_history(&pool, &history).await;
        let live_sample = sample("svc", start + 30 * HOUR + 60_000, 3.0);
        // what a replica that saw everything live holds
        // the stage's maintenance tick closes what the clock allows; the live engine does too
        let clock = Arc::new(ManualClock::new(start + 31 * HOUR));
        let mut live = FeatureEngine::new(FeaturesConfig::default(), clock.clone()).unwrap();
        live.observe_batch(&history);
        live.observe_batch(std::slice::from_ref(&live_sample));
        live.advance_to(clock.now_ms());

        let engine: SharedEngine = Arc::new(Mutex::new(
            FeatureEngine::new(FeaturesConfig::default(), clock.clone()).unwrap(),
        ));
        let (tx, rx) = mpsc::channel(4);
        let (stage_clock, clock2) = (clock.clone(), clock.clone());
        let metrics = DownstreamMetrics::default();
        let writer = CacheWriter::disabled(Arc::new(CacheMetrics::new()));
        let stage = tokio::spawn(run(DownstreamArgs {
            batches: rx,
            engine: engine.clone(),
            cache: writer.sender(),
            cache_reader: None,
            anomaly: None,
            history: Some(HistorySource {
                pool: pool.clone(),
                lookback_ms: 168 * HOUR,
                max_rows: 10_000,
            }),
            keys: KeySpace::new("test_rebuild"),
            metrics: metrics.clone(),
            shutdown: CancellationToken::new(),
            clock: Arc::new(move || stage_clock.now_ms()),
        }));
        tx.send(Arc::new(vec![live_sample])).await.unwrap();
        drop(tx);
        stage.await.unwrap();
        engine.lock().unwrap().advance_to(clock2.now_ms());
        assert_eq!(metrics.rebuilt_services.get(), 1);
        assert_eq!(metrics.rebuilt_samples.get(), 120);
        let engine = engine.lock().unwrap();
        let (got, want) = (engine.state("svc").unwrap(), live.state("svc").unwrap());
        assert_eq!(
            got.rows(),
            30,
            "30 closed hours of history; the live hour is open"
        );
        assert_eq!(got.rows(), want.rows());
        assert_eq!(got.window(), want.window());
        assert_eq!(engine.features("svc"), live.features("svc"));
    }

    /// After a restart the detectors are warm at once: a service rebuilt from PostgreSQL and
    /// one restored from its cached snapshot (detectors not held by the anomaly stage) both
    /// have their replayed buckets offered as history, which the stage learns from without
    /// scoring; only the live buckets are scored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rebuilt_and_restored_services_warm_the_anomaly_detectors() {
        use crate::anomaly::stage::{run as run_stage, StageArgs};
        use crate::anomaly::{AnomalyConfig, AnomalyFeed, AnomalyMetrics, AnomalySink};
        use crate::cache::MemoryCache;
        let (pool, _) = crate::testing::fresh_store("downstream_warm").await;
        let start = 1_763_683_200_000;
        let hours = 200;
        let history: Vec<Sample> = ["rebuilt", "restored"]
            .iter()
            .flat_map(|id| (0..hours).map(move |h| sample(id, start + h * HOUR, (h % 7) as f64)))
            .collect();
        store_history(&pool, &history).await;
        let clock = Arc::new(ManualClock::new(start + hours * HOUR + 120_000));
        // "restored" left a snapshot in the cache before the restart
        let mut before = FeatureEngine::new(FeaturesConfig::default(), clock.clone()).unwrap();
        let restored: Vec<Sample> = history
            .iter()
            .filter(|s| s.service_id == "restored")
            .cloned()
            .collect();
        before.observe_batch(&restored);
        let config = CacheConfig::default();
        let memory: Arc<dyn HotCache> =
            Arc::new(MemoryCache::new(&config, Arc::new(CacheMetrics::new())));
        let keys = KeySpace::new("test_warm");
        memory
            .put_batch(&[keys.entry(
                Tier::Features,
                "restored",
                "snapshot",
                before.snapshot("restored").unwrap(),
            )])
            .await
            .unwrap();

        let am = AnomalyMetrics::default();
        let (feed, records) = AnomalyFeed::channel(64, &am);
        let writer = CacheWriter::disabled(Arc::new(CacheMetrics::new()));
        let stage_clock = clock.clone();
        let anomaly_stage = tokio::spawn(run_stage(StageArgs {
            config: AnomalyConfig::default(),
            resolve_after_ms: 2 * HOUR,
            records,
            sink: AnomalySink::disabled(),
            cache: writer.sender(),
            keys: keys.clone(),
            alerts: crate::alert::AlertSender::disabled(),
            metrics: am.clone(),
            clock: Arc::new(move || stage_clock.now_ms()),
        }));
        let engine: SharedEngine = Arc::new(Mutex::new(
            FeatureEngine::new(FeaturesConfig::default(), clock.clone()).unwrap(),
        ));
        let (tx, rx) = mpsc::channel(4);
        let metrics = DownstreamMetrics::default();
        let ds_clock = clock.clone();
        let probe = feed.clone();
        let stage = tokio::spawn(run(DownstreamArgs {
            batches: rx,
            engine: engine.clone(),
            cache: writer.sender(),
            cache_reader: Some(memory),
            anomaly: Some(feed),
            history: Some(HistorySource {
                pool: pool.clone(),
                lookback_ms: 168 * HOUR,
                max_rows: 10_000,
            }),
            keys,
            metrics: metrics.clone(),
            shutdown: CancellationToken::new(),
            clock: Arc::new(move || ds_clock.now_ms()),
        }));
        // the first live samples after the restart close the last history hour live
        let live = start + hours * HOUR + 60_000;
        tx.send(Arc::new(vec![
            sample("rebuilt", live, 3.0),
            sample("restored", live, 3.0),
        ]))
        .await
        .unwrap();
        drop(tx);
        stage.await.unwrap();
        assert_eq!(metrics.rebuilt_services.get(), 1);
        assert_eq!(metrics.restored_services.get(), 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while am.points.get() < 2 * 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the anomaly stage did not take the live buckets ({} points, {} history)",
                am.points.get(),
                am.history_points.get()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // each service replays the hours its 168 h lookback closes, 3 observed series each
        // (cpu, requests, errors): what a fresh engine closes from those samples, more than
        // the detectors' warm-up
        let from = live - 168 * HOUR;
        let window: Vec<Sample> = restored
            .iter()
            .filter(|s| s.ts_ms >= from)
            .cloned()
            .collect();
        let replayed = FeatureEngine::new(FeaturesConfig::default(), clock.clone())
            .unwrap()
            .observe_batch(&window)
            .len();
        assert!(replayed > crate::anomaly::mcpwatch::Params::default().warmup as usize);
        assert_eq!(am.history_points.get(), 2 * replayed as u64 * 3);
        assert_eq!(am.history_dropped.get(), 0);
        assert_eq!(am.records_out_of_order.get(), 0, "history came first");
        assert!(probe.holds("rebuilt") && probe.holds("restored"));
        drop(probe);
        anomaly_stage.await.unwrap().unwrap();
    }
}
