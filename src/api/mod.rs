//! The HTTP face of the daemon: the last stop of the journey (ingest → … → **api**).
//!
//! `fn app(state) -> Router` builds every route so tests can drive it with `oneshot`;
//! the daemon serves it with graceful shutdown.
//!
//! - [`plans`]: `POST /plans`, the capacity plan (SPEC §7) — context, router, forecast,
//!   policy, anomaly check, flavor and cost; recorded by [`audit`].
//! - [`query`]: `GET /v1/servers…` (cache first, PostgreSQL fallback); [`stats`]: `GET /v1/stats`.
//! - [`auth`]: API keys (`mcpwatch apikey`), [`ratelimit`]: per-key limits, [`middleware`]:
//!   the layers every request passes; [`openapi`]: `/openapi.json`.

pub mod anomalies;
pub mod audit;
pub mod auth;
mod config;
pub mod core;
mod error;
mod health;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod plans;
pub mod query;
pub mod ratelimit;
pub mod sql;
pub mod stats;

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_integration;
#[cfg(test)]
mod tests_plans;
#[cfg(test)]
mod tests_query;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

pub use self::core::{ApiCore, ApiCoreArgs};
pub use config::{ApiConfig, HttpConfig};
pub use error::{ApiError, ErrorBody};
pub use health::{Readiness, ReadinessCheck};

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// The registry `/metrics` renders; written only at start, so a read lock is uncontended.
    pub registry: Arc<prometheus_client::registry::Registry>,
    /// Probes of the daemon's dependencies for `/readyz`.
    pub readiness: Arc<Readiness>,
    /// Engine, cache, forecaster, keys, limits, audit: everything the `/plans` and `/v1`
    /// handlers read.
    pub core: Arc<ApiCore>,
    /// Transport settings: body limit and request timeout.
    pub http: HttpConfig,
    /// What `/v1/anomalies` reads (`None`: detection is off, the route answers 503).
    pub anomalies: Option<anomalies::AnomalyApi>,
    /// Read-only SQL over the archive (`GET /v1/query`); None when archiving is off.
    pub sql: Option<Arc<sql::QueryState>>,
}

/// `GET /v1/ping`: a trivial answer behind the same layers as `/plans` (auth, rate limit,
/// metrics), the load test's reference for what the plan logic costs.
#[utoipa::path(get, path = "/v1/ping", responses((status = 200, description = "pong")),
    security(("bearer" = [])))]
pub async fn ping() -> Json<serde_json::Value> {
    Json(serde_json::json!({"pong": true}))
}

/// Every route of the daemon.
pub fn app(state: ApiState) -> Router {
    let timeout = Duration::from_millis(state.http.request_timeout_ms);
    let router = Router::new();
    // routes that misbehave on purpose, so tests can see the panic guard and the timeout
    #[cfg(test)]
    let router = router
        .route(
            "/test/panic",
            get(|| async {
                if true {
                    panic!("a handler bug");
                }
                "unreachable"
            }),
        )
        .route(
            "/test/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    router
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::openapi))
        .route("/plans", post(plans::plans))
        .route("/v1/ping", get(ping))
        .route("/v1/servers", get(query::servers))
        .route("/v1/servers/{id}/metrics", get(query::metrics))
        .route("/v1/servers/{id}/forecast", get(query::forecast))
        .route("/v1/servers/{id}/trend", get(query::trend))
        .route("/v1/stats", get(stats::stats))
        .route("/v1/anomalies", get(anomalies::list))
        .route("/v1/query", get(sql::query))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(state.http.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::authorize,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_response(&state)))
        .layer(axum::middleware::from_fn(middleware::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::track,
        ))
        .with_state(state)
}
