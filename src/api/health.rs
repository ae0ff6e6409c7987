//! Liveness, readiness and the metrics exposition.

use std::future::Future;
use std::pin::Pin;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::ApiState;
use crate::telemetry::render;

/// A named dependency check. `critical` ones make `/readyz` answer 503 when they fail;
/// the others only mark the daemon as degraded.
pub struct ReadinessCheck {
    pub name: &'static str,
    pub critical: bool,
    pub probe: Box<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>,
}

/// The set of checks `/readyz` runs, concurrently.
#[derive(Default)]
pub struct Readiness {
    pub checks: Vec<ReadinessCheck>,
}

pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    let results =
        futures::future::join_all(state.readiness.checks.iter().map(|c| (c.probe)())).await;
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    let mut degraded = false;
    for (check, ok) in state.readiness.checks.iter().zip(results) {
        checks.insert(
            check.name.to_string(),
            json!(if ok { "ok" } else { "down" }),
        );
        if !ok {
            if check.critical {
                ready = false;
            } else {
                degraded = true;
            }
        }
    }
    let status = match (ready, degraded) {
        (false, _) => "not_ready",
        (true, true) => "degraded",
        (true, false) => "ready",
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({"status": status, "checks": checks})))
}

pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render(&state.registry),
    )
}
