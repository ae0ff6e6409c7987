//! The HTTP face of the daemon: the last stop of the journey (ingest → … → **api**).
//!
//! `fn app(state) -> Router` builds every route so tests can drive it with `oneshot`;
//! the daemon serves it with graceful shutdown.

mod config;
mod error;
mod health;
pub mod query;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

pub use config::HttpConfig;
pub use error::ApiError;
pub use health::{Readiness, ReadinessCheck};

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// The registry `/metrics` renders; written only at start, so a read lock is uncontended.
    pub registry: Arc<prometheus_client::registry::Registry>,
    /// Probes of the daemon's dependencies for `/readyz`.
    pub readiness: Arc<Readiness>,
    /// Read-only SQL over the archive (`GET /v1/query`); None when archiving is off.
    pub query: Option<Arc<query::QueryState>>,
}

/// Every route of the daemon.
pub fn app(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/v1/query", get(query::query))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}
