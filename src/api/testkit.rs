//! Building an [`ApiState`] for tests: an in-process cache (the real `MemoryCache`), an
//! engine fed by the test, the baseline forecaster (deterministic), a manual clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::auth::KeyCache;
use super::core::{ApiCore, ApiCoreArgs};
use super::metrics::ApiMetrics;
use super::{app, ApiConfig, ApiState, HttpConfig, Readiness};
use crate::cache::{CacheConfig, CacheMetrics, HotCache, KeySpace, MemoryCache};
use crate::features::{FeatureEngine, FeaturesConfig, ManualClock};
use crate::forecast::{ForecastConfig, ForecastMetrics, Forecaster};
use crate::telemetry::Metrics;

/// 2025-11-20T12:00:00Z, a Thursday, on an hour boundary.
pub const T0: i64 = 1_763_640_000_000;

pub struct Kit {
    pub state: ApiState,
    pub cache: Arc<MemoryCache>,
    pub clock: Arc<AtomicI64>,
    pub keys: KeySpace,
}

pub struct KitOptions {
    pub api: ApiConfig,
    pub http: HttpConfig,
    pub pool: Option<deadpool_postgres::Pool>,
    pub auth: Option<Arc<KeyCache>>,
    pub anomalies: Option<tokio::sync::mpsc::Sender<crate::forecast::policy::ForecastAnomaly>>,
    pub audit: Option<super::audit::AuditSender>,
    pub metrics: ApiMetrics,
}

impl Default for KitOptions {
    fn default() -> Self {
        KitOptions {
            api: ApiConfig {
                auth: false,
                rate_limit_per_sec: 0.0,
                ..ApiConfig::default()
            },
            http: HttpConfig::default(),
            pool: None,
            auth: None,
            anomalies: None,
            audit: None,
            metrics: ApiMetrics::default(),
        }
    }
}

pub fn kit(o: KitOptions) -> Kit {
    let clock = Arc::new(AtomicI64::new(T0 + 20 * 60_000));
    let c = clock.clone();
    let cache_config = CacheConfig {
        key_prefix: "t".into(),
        ..CacheConfig::default()
    };
    let cache_metrics = Arc::new(CacheMetrics::new());
    let cache = Arc::new(MemoryCache::new(&cache_config, cache_metrics.clone()));
    let engine_clock = Arc::new(ManualClock::new(T0 + 20 * 60_000));
    let engine = Arc::new(Mutex::new(
        FeatureEngine::new(FeaturesConfig::default(), engine_clock.clone()).unwrap(),
    ));
    let forecast_config = ForecastConfig {
        routes: [("default".to_string(), "baseline_web_v1".to_string())].into(),
        ..ForecastConfig::default()
    };
    let forecaster = Forecaster::new(forecast_config, 3600, ForecastMetrics::default()).unwrap();
    let keys = KeySpace::new("t");
    let metrics = o.metrics.clone();
    let auth = o
        .auth
        .unwrap_or_else(|| Arc::new(KeyCache::new(None, Duration::from_secs(1))));
    let micros_clock = clock.clone();
    let core = ApiCore::new(
        ApiCoreArgs {
            config: o.api,
            engine,
            bucket_width_secs: 3600,
            forecaster,
            cache: Some(cache.clone() as Arc<dyn HotCache>),
            cache_metrics,
            keys: keys.clone(),
            pool: o.pool,
            auth,
            audit: o.audit,
            anomalies: o.anomalies,
            metrics: metrics.clone(),
            ingest: None,
            clock: Arc::new(move || c.load(Ordering::SeqCst)),
            micros: Arc::new(move || micros_clock.load(Ordering::SeqCst) * 1000),
        },
        None,
    )
    .unwrap();
    let telemetry = Metrics::default();
    let mut registry = telemetry.registry();
    metrics.register(&mut registry);
    Kit {
        state: ApiState {
            registry: Arc::new(registry),
            readiness: Arc::new(Readiness::default()),
            core: Arc::new(core),
            http: o.http,
            anomalies: None,
            sql: None,
        },
        cache,
        clock,
        keys,
    }
}

impl Kit {
    /// Sends one request through the whole router.
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    pub async fn post_plan(
        &self,
        body: &str,
        token: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut b = Request::post("/plans").header("content-type", "application/json");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        self.send(b.body(Body::from(body.to_string())).unwrap())
            .await
    }

    pub async fn get(
        &self,
        uri: &str,
        token: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut b = Request::get(uri);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    /// Puts a forecast for `service` in the cache as the continuous loop would.
    pub async fn cache_forecast(&self, service: &str, values: Vec<f64>, first_ms: i64) {
        let f = super::plans::CachedForecast {
            service_id: service.into(),
            model_version: "baseline_web_v1".into(),
            routed_version: "baseline_web_v1".into(),
            fallback_reason: None,
            first_bucket_ms: first_ms,
            step_ms: 3_600_000,
            values,
        };
        let entry = self.keys.entry(
            crate::cache::Tier::Forecast,
            service,
            crate::cache::kind::FORECAST,
            serde_json::to_vec(&f).unwrap(),
        );
        self.cache.put_batch(&[entry]).await.unwrap();
    }

    /// Feeds `hours` hourly samples of `service` (requests from `f(hour)`) into the engine.
    pub fn feed(&self, service: &str, hours: i64, f: impl Fn(i64) -> f64) {
        let mut engine = self.state.core.engine.lock().unwrap();
        let start = T0 - hours * 3_600_000;
        for h in 0..hours {
            let mut s = crate::sample::Sample::new(
                service,
                start + h * 3_600_000,
                crate::sample::Origin::Mcp,
            );
            s.requests = Some(f(h));
            s.cpu = Some(0.4);
            s.memory = Some(0.5);
            s.instance_id = Some("i-1".into());
            engine.observe(&s);
        }
        // close the last bucket
        engine.advance_to(T0 + 10 * 60_000);
    }
}
