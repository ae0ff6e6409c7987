//! What the handlers share beyond health: the feature engine, the hot cache, the forecaster
//! and its router, the key cache and rate limiter, the audit queue, the alerter's queue, and
//! the API's metrics. Built once by the daemon (or a test) from [`ApiCoreArgs`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::audit::AuditSender;
use super::auth::KeyCache;
use super::config::ApiConfig;
use super::metrics::ApiMetrics;
use super::ratelimit::{MicrosClock, RateLimiter};
use crate::cache::{CacheMetrics, CacheSender, CacheWriter, HotCache, KeySpace, ReadThrough};
use crate::downstream::SharedEngine;
use crate::forecast::policy::{ForecastAnomaly, PolicyConfig};
use crate::forecast::{ForecastContext, Forecaster, Router};
use crate::ingest::IngestMetrics;

/// Epoch-millisecond wall clock, injected so tests control it.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Constructor arguments of [`ApiCore`].
pub struct ApiCoreArgs {
    pub config: ApiConfig,
    pub engine: SharedEngine,
    /// `features.bucket_width_secs`.
    pub bucket_width_secs: u64,
    pub forecaster: Forecaster,
    /// The cache backend (`None`: no cache).
    pub cache: Option<Arc<dyn HotCache>>,
    pub cache_metrics: Arc<CacheMetrics>,
    pub keys: KeySpace,
    /// PostgreSQL: the key table, the metrics fallback, the audit (`None`: none of those).
    pub pool: Option<deadpool_postgres::Pool>,
    pub auth: Arc<KeyCache>,
    pub audit: Option<AuditSender>,
    /// Where forecast anomalies go (the alerter); `None`: counted only.
    pub anomalies: Option<mpsc::Sender<ForecastAnomaly>>,
    pub metrics: ApiMetrics,
    /// Ingest figures for `/v1/stats` (`None` in tests without a pipeline).
    pub ingest: Option<IngestMetrics>,
    pub clock: Clock,
    pub micros: MicrosClock,
}

/// The fleet's typical service, the prior of a cold-start plan.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FleetPrior {
    pub events: f64,
    pub cpu: f64,
    pub memory: f64,
}

/// What a plan needs of a service the engine holds, without its full window.
#[derive(Debug, Clone)]
pub struct Known {
    /// Start of the newest closed bucket.
    pub last_bucket_ms: i64,
    /// Closed buckets so far.
    pub rows: u64,
    /// Recent target values, oldest first ([`crate::forecast::ForecastInput::history`]).
    pub history: Arc<Vec<f64>>,
}

/// Shared state of the API handlers.
pub struct ApiCore {
    pub config: ApiConfig,
    /// The rolling feature state, written by the features stage; locked briefly to read one
    /// service's window.
    pub engine: SharedEngine,
    pub bucket_width_ms: i64,
    pub season: usize,
    pub forecaster: Forecaster,
    pub router: Router,
    /// The model version the continuous loop's (default) context routes to: the forecast
    /// cached for a service is of this version.
    pub default_route: String,
    /// Cache-first reads (hit/miss metrics, degraded bypass, read-repair).
    pub read: ReadThrough,
    /// The backend itself, for multi-key reads and its memory figure.
    pub cache: Option<Arc<dyn HotCache>>,
    /// Producer handle to offer computed forecasts back to the cache (best effort).
    pub refill: Option<CacheSender>,
    pub cache_metrics: Arc<CacheMetrics>,
    pub keys: KeySpace,
    pub pool: Option<deadpool_postgres::Pool>,
    pub auth: Arc<KeyCache>,
    pub limiter: RateLimiter,
    pub audit: Option<AuditSender>,
    /// Queue to the alerter; `try_send` only.
    pub anomalies: Option<mpsc::Sender<ForecastAnomaly>>,
    pub metrics: ApiMetrics,
    pub ingest: Option<IngestMetrics>,
    pub clock: Clock,
    pub started_ms: i64,
    pub policy: PolicyConfig,
    /// The last fleet prior and when it was computed (recomputed at most every 30 s, only by
    /// cold-start plans).
    pub(crate) fleet: Mutex<Option<(i64, FleetPrior)>>,
    /// Each service's history as of its newest closed bucket: rebuilding it needs the 24-row
    /// feature window (tens of µs under the engine lock), so it is rebuilt once per bucket, not
    /// once per request. Cleared when it outgrows 100,000 services.
    pub(crate) known: Mutex<HashMap<String, Known>>,
    /// Recent (time, decoded samples) readings for the ingest rate in `/v1/stats`.
    pub(crate) ingest_readings: Mutex<VecDeque<(i64, u64)>>,
}

impl ApiCore {
    /// Builds the shared state. `writer` (when the cache has one) makes reads follow its
    /// mode and lets computed forecasts be offered back.
    pub fn new(
        args: ApiCoreArgs,
        writer: Option<&CacheWriter>,
    ) -> Result<ApiCore, crate::forecast::ForecastError> {
        let router = args.forecaster.config().router()?;
        let default_route = router.route(&ForecastContext::default()).version.clone();
        let mut read = ReadThrough::new(args.cache.clone(), args.cache_metrics.clone());
        let mut refill = None;
        if let Some(w) = writer {
            read = read.with_writer(w);
            let s = w.sender();
            refill = s.is_enabled().then_some(s);
        }
        let limiter = RateLimiter::new(
            args.config.rate_limit_per_sec,
            args.config.rate_limit_burst,
            args.micros,
        );
        let bucket_width_secs = args.bucket_width_secs.max(1);
        Ok(ApiCore {
            policy: args.config.policy(),
            config: args.config,
            engine: args.engine,
            bucket_width_ms: bucket_width_secs as i64 * 1000,
            season: crate::forecast::season_buckets(bucket_width_secs),
            forecaster: args.forecaster,
            router,
            default_route,
            read,
            cache: args.cache,
            refill,
            cache_metrics: args.cache_metrics,
            keys: args.keys,
            pool: args.pool,
            auth: args.auth,
            limiter,
            audit: args.audit,
            anomalies: args.anomalies,
            metrics: args.metrics,
            ingest: args.ingest,
            started_ms: (args.clock)(),
            clock: args.clock,
            fleet: Mutex::new(None),
            known: Mutex::new(HashMap::new()),
            ingest_readings: Mutex::new(VecDeque::new()),
        })
    }

    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// The service's newest bucket and history, `None` if the engine does not hold it. The
    /// engine lock is held for an O(1) look-up, plus the window rebuild once per new bucket.
    pub fn known(&self, service_id: &str, ctx: ForecastContext) -> Option<Known> {
        let engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        let state = engine.state(service_id)?;
        let (last, rows) = (state.last_bucket_start_ms()?, state.rows());
        let mut memo = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = memo.get(service_id) {
            if k.last_bucket_ms == last && k.rows == rows {
                return Some(k.clone());
            }
        }
        let input = crate::forecast::ForecastInput::from_engine(&engine, service_id, ctx)?;
        drop(engine);
        let k = Known {
            last_bucket_ms: input.last_bucket_ms,
            rows: input.rows,
            history: Arc::new(input.history),
        };
        if memo.len() >= 100_000 {
            memo.clear();
        }
        memo.insert(service_id.to_string(), k.clone());
        Some(k)
    }

    /// The fleet prior, recomputed when older than 30 s.
    pub(crate) fn fleet_prior(&self) -> FleetPrior {
        let now = self.now_ms();
        if let Some((at, p)) = *self.fleet.lock().unwrap_or_else(|e| e.into_inner()) {
            if now - at < 30_000 {
                return p;
            }
        }
        let (mut events, mut cpu, mut memory) = (Vec::new(), Vec::new(), Vec::new());
        {
            let engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<&str> = engine.service_ids().collect();
            for id in ids {
                if let Some(row) = engine.state(id).and_then(|s| s.last_row()) {
                    events.push(row.total_events);
                    cpu.push(f64::from(
                        row.aggregates[crate::features::bucket::A_AVG_CPU],
                    ));
                    memory.push(f64::from(
                        row.aggregates[crate::features::bucket::A_AVG_MEMORY],
                    ));
                }
            }
        }
        let p = FleetPrior {
            events: median(&mut events),
            cpu: median(&mut cpu),
            memory: median(&mut memory),
        };
        *self.fleet.lock().unwrap_or_else(|e| e.into_inner()) = Some((now, p));
        p
    }
}

fn median(v: &mut Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
