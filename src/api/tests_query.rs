//! The `/v1` read endpoints through the router (`oneshot`), on the in-process cache and an
//! engine fed by the test (the PostgreSQL paths are in `tests_integration`).

use axum::http::StatusCode;
use serde_json::Value;

use super::testkit::{kit, KitOptions, T0};
use crate::cache::{kind, HotCache, SampleView, Tier};

#[tokio::test]
async fn servers_list_status_from_the_latest_sample() {
    let k = kit(KitOptions::default());
    k.feed("alpha", 30, |_| 10.0);
    k.feed("beta", 30, |_| 10.0);
    let mut s = crate::sample::Sample::new("alpha", T0, crate::sample::Origin::Mcp);
    s.status = Some(crate::sample::Status::Degraded);
    k.cache
        .put_batch(&[SampleView::latest_entry(&s, &k.keys)])
        .await
        .unwrap();
    let (status, _, text) = k.get("/v1/servers", None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["count"], 2);
    assert_eq!(v["servers"][0]["id"], "alpha");
    assert_eq!(v["servers"][0]["status"], "degraded");
    assert_eq!(v["servers"][0]["latest"]["status"], "degraded");
    assert_eq!(v["servers"][1]["status"], "unknown");
    assert_eq!(v["servers"][1]["buckets"], 30);
    // ten minutes of silence later (wall clock), every service is stale
    k.clock
        .fetch_add(3_600_000, std::sync::atomic::Ordering::SeqCst);
    let v: Value = serde_json::from_str(&k.get("/v1/servers?limit=1", None).await.2).unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["active"], 2);
    assert_eq!(v["servers"][0]["status"], "stale");
}

#[tokio::test]
async fn forecast_comes_from_the_cache_or_is_computed() {
    let k = kit(KitOptions::default());
    k.feed("svc", 72, |h| 100.0 + (h % 24) as f64);
    let (status, _, text) = k.get("/v1/servers/svc/forecast", None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["source"], "computed");
    assert_eq!(v["points"].as_array().unwrap().len(), 24);
    assert_eq!(v["points"][0]["time"], "2025-11-20T12:00:00.000Z");
    k.cache_forecast("svc", vec![7.0; 24], T0).await;
    let v: Value = serde_json::from_str(&k.get("/v1/servers/svc/forecast", None).await.2).unwrap();
    assert_eq!(v["source"], "cache");
    assert_eq!(v["points"][3]["value"], 7.0);
    let (status, _, text) = k.get("/v1/servers/nobody/forecast", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    // the cache entry is the continuous loop's format
    let raw = k
        .cache
        .get(&k.keys.key(Tier::Forecast, "svc", kind::FORECAST))
        .await
        .unwrap()
        .unwrap();
    assert!(serde_json::from_slice::<super::plans::CachedForecast>(&raw).is_ok());
}

#[tokio::test]
async fn metrics_and_trend_queries_are_validated() {
    let k = kit(KitOptions::default());
    for (uri, field) in [
        ("/v1/servers/s/metrics?step=0", "step"),
        ("/v1/servers/s/metrics?step=5x", "step"),
        ("/v1/servers/s/metrics?step=1s&from=0", "step"),
        (
            "/v1/servers/s/metrics?from=2025-11-20T12:00:00Z&to=2025-11-20T11:00:00Z",
            "from",
        ),
        ("/v1/servers/s/metrics?to=soon", "to"),
        ("/v1/servers/s/trend?window=10s", "window"),
        ("/v1/servers/s/trend?window=abc", "window"),
    ] {
        let (status, _, text) = k.get(uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["field"], field, "{uri}");
    }
    // without PostgreSQL the fallback is unavailable: 503, named
    let (status, _, text) = k.get("/v1/servers/s/metrics", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
}

#[tokio::test]
async fn stats_explain_the_health_score() {
    let k = kit(KitOptions::default());
    k.feed("svc", 30, |_| 10.0);
    let (status, _, text) = k.get("/v1/stats", None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["active_servers"], 1);
    let components = v["health"]["components"].as_array().unwrap();
    let (weight, points) = components.iter().fold((0.0, 0.0), |(w, p), c| {
        (
            w + c["weight"].as_f64().unwrap(),
            p + c["points"].as_f64().unwrap(),
        )
    });
    let score = v["health"]["score"].as_f64().unwrap();
    assert!(
        (score - (points / weight * 100.0).round()).abs() <= 1.0,
        "{text}"
    );
    assert!(!v["recommendations"].as_array().unwrap().is_empty());
    assert_eq!(v["cache"]["backend"], "memory");
}

#[tokio::test]
async fn panics_and_timeouts_are_json_errors_and_the_server_goes_on() {
    let metrics = super::metrics::ApiMetrics::default();
    let k = kit(KitOptions {
        http: super::HttpConfig {
            request_timeout_ms: 50,
            ..super::HttpConfig::default()
        },
        metrics: metrics.clone(),
        ..KitOptions::default()
    });
    let (status, _, text) = k.get("/test/panic", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "internal");
    assert_eq!(metrics.panics.get(), 1);
    let (status, _, text) = k.get("/test/slow", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "timeout", "{text}");
    assert_eq!(k.get("/healthz", None).await.0, StatusCode::OK);
}
