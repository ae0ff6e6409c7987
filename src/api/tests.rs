//! Router tests with `oneshot`: no socket, no dependencies.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::telemetry::Metrics;

fn state(pg_ok: bool) -> ApiState {
    let metrics = Metrics::default();
    metrics.ingest.messages.inc_by(3);
    let mut state = super::testkit::kit(Default::default()).state;
    state.registry = Arc::new(metrics.registry());
    state.readiness = Arc::new(Readiness {
        checks: vec![
            ReadinessCheck {
                name: "postgres",
                critical: true,
                probe: Box::new(move || Box::pin(async move { pg_ok })),
            },
            ReadinessCheck {
                name: "redis",
                critical: false,
                probe: Box::new(|| Box::pin(async { false })),
            },
        ],
    });
    state.anomalies = None;
    state.sql = None;
    state
}

async fn get(app: Router, uri: &str) -> (StatusCode, String) {
    let response = app
        .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn healthz_is_always_ok() {
    assert_eq!(get(app(state(false)), "/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn readyz_reports_each_check() {
    let (status, body) = get(app(state(true)), "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "degraded"); // redis is non-critical and down
    assert_eq!(v["checks"]["postgres"], "ok");
    assert_eq!(v["checks"]["redis"], "down");

    let (status, body) = get(app(state(false)), "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("not_ready"));
}

#[tokio::test]
async fn metrics_follow_prometheus_conventions() {
    let (status, body) = get(app(state(true)), "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("mcpwatch_messages_consumed_total 3"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE mcpwatch_store_copy_duration_seconds histogram"),
        "{body}"
    );
    assert!(body.contains("mcpwatch_samples_stored_total"), "{body}");
    for line in body.lines().filter(|l| l.starts_with("# TYPE")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(name.starts_with("mcpwatch_"), "{name}");
    }
}

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let (status, body) = get(app(state(true)), "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "not_found");
}
