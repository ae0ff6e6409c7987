//! `POST /plans` through the whole router (`oneshot`): the flavor/cost rule table, the
//! defaults, every validation error, auth and rate limits, hostile input.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::auth::{generate, KeyCache};
use super::plans::{flavor, PlanResponse, COLD_START_FLEET};
use super::testkit::{kit, Kit, KitOptions, T0};
use super::{ApiConfig, HttpConfig};
use crate::forecast::TimeSlot;

const HOUR: i64 = 3_600_000;

fn body(users: Option<u64>, slot: Option<&str>) -> String {
    let mut ctx = json!({"github_url": "https://github.com/acme/svc"});
    if let Some(u) = users {
        ctx["expected_users"] = json!(u);
    }
    if let Some(s) = slot {
        ctx["time_slot"] = json!(s);
    }
    json!({"service_id": "svc", "metric_name": "total_events", "context": ctx}).to_string()
}

/// Forecast shapes of the rule table (24 hourly values).
fn shape(name: &str) -> Vec<f64> {
    (0..24)
        .map(|h| {
            let h = h as f64;
            match name {
                // mean 50, max 60
                "quiet" => 50.0 + 10.0 * (h / 24.0 * std::f64::consts::TAU).sin(),
                // a smooth hump: max 1100, mean about 466
                "peaky" => 200.0 + 900.0 * (-((h - 12.0) / 4.0).powi(2)).exp(),
                // flat 600: mean above 500
                "heavy" => 600.0,
                _ => unreachable!(),
            }
        })
        .collect()
}

fn plan(text: &str) -> PlanResponse {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not a plan ({e}): {text}"))
}

#[test]
fn spec_rule_table() {
    // users × time slot × forecast (max, mean) → flavor, straight from SPEC §7
    let mut table = String::from("users slot max mean -> flavor cost\n");
    for users in [0, 500, 501, 5000, 5001] {
        for slot in [
            TimeSlot::Peak,
            TimeSlot::Normal,
            TimeSlot::Low,
            TimeSlot::Weekend,
        ] {
            for (max, mean) in [
                (60.0, 50.0),
                (1000.0, 500.0),
                (1000.5, 100.0),
                (900.0, 500.5),
            ] {
                let f = flavor(users, slot, max, mean);
                table.push_str(&format!(
                    "{users} {} {max} {mean} -> {} {}\n",
                    slot.as_str(),
                    f.as_str(),
                    f.cost_per_day()
                ));
            }
        }
    }
    insta::assert_snapshot!(table);
}

#[tokio::test]
async fn plan_table_end_to_end() {
    // the same rules through the router, with context scaling (users / 1000 × slot factor)
    // and the policy between the cached forecast and the rule
    let mut table = String::from("users slot forecast -> flavor cost max mean model\n");
    for name in ["quiet", "peaky", "heavy"] {
        let k = kit(KitOptions::default());
        k.cache_forecast("svc", shape(name), T0).await;
        for users in [100u64, 500, 501, 1000, 5000, 5001] {
            for slot in ["peak", "normal", "low", "weekend"] {
                let (status, _, text) = k.post_plan(&body(Some(users), Some(slot)), None).await;
                assert_eq!(status, StatusCode::OK, "{text}");
                let p = plan(&text);
                let values: Vec<f64> = p.prediction.predictions.iter().map(|x| x.value).collect();
                assert_eq!(values.len(), 24);
                let max = values.iter().copied().fold(0.0, f64::max);
                let mean = values.iter().sum::<f64>() / 24.0;
                // the rule holds on what was answered
                let slot_t = match slot {
                    "peak" => TimeSlot::Peak,
                    "normal" => TimeSlot::Normal,
                    "low" => TimeSlot::Low,
                    _ => TimeSlot::Weekend,
                };
                assert_eq!(
                    p.recommended_flavor,
                    flavor(users, slot_t, max, mean).as_str()
                );
                table.push_str(&format!(
                    "{users} {slot} {name} -> {} {} {max:.1} {mean:.1} {}\n",
                    p.recommended_flavor, p.expected_cost_per_day, p.prediction.model_version
                ));
            }
        }
    }
    insta::assert_snapshot!(table);
}

#[tokio::test]
async fn defaults_are_filled_in() {
    let k = kit(KitOptions::default());
    k.cache_forecast("svc", shape("quiet"), T0).await;
    let (status, headers, text) = k.post_plan(&body(None, None), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_str(&text).unwrap();
    insta::assert_json_snapshot!("defaults", v);
    // the defaults are exactly the explicit values
    let explicit = json!({"service_id": "svc", "metric_name": "total_events", "context": {
        "github_url": "https://github.com/acme/svc", "service_type": "web", "runtime_env": "prod",
        "time_slot": "normal", "weight": 1.0, "expected_users": 1000}});
    let (_, _, text2) = k.post_plan(&explicit.to_string(), None).await;
    assert_eq!(text, text2);
    // nulls count as absent, unknown fields are ignored
    let nulls = json!({"service_id": "svc", "metric_name": "total_events", "extra": [1],
        "requirements": null, "context": {"github_url": "https://github.com/acme/svc",
        "time_slot": null, "weight": null, "expected_users": null, "whatever": true}});
    let (_, _, text3) = k.post_plan(&nulls.to_string(), None).await;
    assert_eq!(text, text3);
}

#[tokio::test]
async fn weight_and_slot_scale_the_plan() {
    let k = kit(KitOptions::default());
    k.cache_forecast("svc", vec![100.0; 24], T0).await;
    let get = |b: Value| {
        let k = &k;
        async move {
            let (_, _, text) = k.post_plan(&b.to_string(), None).await;
            plan(&text).prediction.predictions[0].value
        }
    };
    let base = json!({"service_id": "svc", "metric_name": "total_events",
        "context": {"github_url": "https://github.com/acme/svc"}});
    assert_eq!(get(base.clone()).await, 100.0);
    let mut b = base.clone();
    b["context"]["weight"] = json!(2.0);
    assert_eq!(get(b).await, 200.0);
    let mut b = base.clone();
    b["context"]["expected_users"] = json!(3000);
    b["context"]["time_slot"] = json!("low");
    assert!((get(b).await - 100.0 * 3.0 * 0.6).abs() < 1e-9);
}

#[tokio::test]
async fn computed_and_cold_start_plans_say_so() {
    let k = kit(KitOptions::default());
    // a service with 72 hours of history and nothing cached: computed on demand
    k.feed("known", 72, |h| 100.0 + (h % 24) as f64);
    let b = json!({"service_id": "known", "metric_name": "total_events",
        "context": {"github_url": "https://github.com/acme/known"}});
    let (status, _, text) = k.post_plan(&b.to_string(), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let p = plan(&text);
    assert_eq!(p.prediction.model_version, "baseline_web_v1");
    assert_eq!(p.prediction.predictions[0].time, "2025-11-20T12:00:00Z");
    let first = p.prediction.predictions[0].value;
    assert!((100.0..=124.0).contains(&first), "{first}");
    // a service nobody has seen: the fleet's median service, flat
    let b = json!({"service_id": "new-one", "metric_name": "total_events",
        "context": {"github_url": "https://github.com/acme/new"}});
    let (_, _, text) = k.post_plan(&b.to_string(), None).await;
    let p = plan(&text);
    assert_eq!(p.prediction.model_version, COLD_START_FLEET);
    let v = p.prediction.predictions[5].value;
    assert!(
        v > 90.0 && p.prediction.predictions.iter().all(|x| x.value == v),
        "{text}"
    );
    // cpu of a known service: the baseline on its window, within 0..1
    let b = json!({"service_id": "known", "metric_name": "cpu_usage",
        "context": {"github_url": "https://github.com/acme/known"}});
    let (_, _, text) = k.post_plan(&b.to_string(), None).await;
    let p = plan(&text);
    assert_eq!(p.prediction.model_version, "baseline_seasonal_v1");
    assert!(
        p.prediction
            .predictions
            .iter()
            .all(|x| (x.value - 0.4).abs() < 1e-6),
        "{text}"
    );
    // memory of an unknown service with curr_mem given: a context cold start
    let b = json!({"service_id": "new-one", "metric_name": "memory_usage",
        "context": {"github_url": "https://github.com/acme/new", "curr_mem": 70}});
    let (_, _, text) = k.post_plan(&b.to_string(), None).await;
    let p = plan(&text);
    assert_eq!(p.prediction.model_version, "cold_start_context_v1");
    assert!((p.prediction.predictions[0].value - 0.7).abs() < 1e-9);
}

#[tokio::test]
async fn stale_or_other_version_cache_entries_are_not_used() {
    let k = kit(KitOptions::default());
    k.feed("svc", 72, |_| 100.0);
    // made before the newest closed bucket: stale, computed anew
    k.cache_forecast("svc", vec![5000.0; 24], T0 - HOUR).await;
    let (_, _, text) = k.post_plan(&body(None, None), None).await;
    assert!(
        plan(&text).prediction.predictions[0].value < 200.0,
        "{text}"
    );
    // fresh: used
    k.cache_forecast("svc", vec![300.0; 24], T0).await;
    let (_, _, text) = k.post_plan(&body(None, None), None).await;
    assert_eq!(plan(&text).prediction.predictions[0].value, 300.0);
}

#[tokio::test]
async fn anomalous_forecasts_are_flagged_without_blocking() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let metrics = super::metrics::ApiMetrics::default();
    let k = kit(KitOptions {
        anomalies: Some(tx),
        metrics: metrics.clone(),
        ..KitOptions::default()
    });
    k.feed("svc", 72, |h| 100.0 + (h % 3) as f64);
    // calm forecast: nothing
    k.cache_forecast("svc", vec![101.0; 24], T0).await;
    let (status, _, _) = k.post_plan(&body(Some(5000), None), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        metrics.plan_anomalies.get(),
        0,
        "context scaling alone is no anomaly"
    );
    // a forecast ten times the history
    k.cache_forecast("svc", vec![1000.0; 24], T0).await;
    for _ in 0..3 {
        let (status, _, _) = k.post_plan(&body(None, None), None).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(metrics.plan_anomalies.get(), 3);
    // the alerter's queue holds one; the others were dropped, not waited for
    assert_eq!(metrics.plan_anomalies_dropped.get(), 2);
    let a = rx.try_recv().unwrap();
    assert_eq!(a.service_id, "svc");
    assert!(a.z_score > 3.0 && a.value == 1000.0, "{a:?}");
}

/// Every validation error, with its status and body.
#[tokio::test]
async fn validation_errors() {
    let k = kit(KitOptions::default());
    let ok = json!({"service_id": "svc", "metric_name": "total_events",
        "context": {"github_url": "https://github.com/acme/svc"}});
    let with = |path: &[&str], v: Value| {
        let mut b = ok.clone();
        let mut cur = &mut b;
        for p in &path[..path.len() - 1] {
            cur = &mut cur[*p];
        }
        cur[path[path.len() - 1]] = v;
        b.to_string()
    };
    let without = |path: &[&str]| {
        let mut b = ok.clone();
        let mut cur = &mut b;
        for p in &path[..path.len() - 1] {
            cur = &mut cur[*p];
        }
        cur.as_object_mut().unwrap().remove(path[path.len() - 1]);
        b.to_string()
    };
    let cases: Vec<(&str, String)> = vec![
        ("not json", "{".into()),
        ("empty body", "".into()),
        ("array", "[]".into()),
        ("string", "\"plan\"".into()),
        ("missing service_id", without(&["service_id"])),
        ("service_id number", with(&["service_id"], json!(7))),
        ("service_id empty", with(&["service_id"], json!("  "))),
        ("service_id control", with(&["service_id"], json!("a\u{0}b"))),
        ("service_id too long", with(&["service_id"], json!("x".repeat(257)))),
        ("missing metric_name", without(&["metric_name"])),
        ("unknown metric_name", with(&["metric_name"], json!("latency"))),
        ("missing context", without(&["context"])),
        ("context array", with(&["context"], json!([1]))),
        ("missing github_url", without(&["context", "github_url"])),
        ("github_url ftp", with(&["context", "github_url"], json!("ftp://github.com/a/b"))),
        ("github_url bare", with(&["context", "github_url"], json!("github.com/a/b"))),
        ("github_url no host", with(&["context", "github_url"], json!("https://"))),
        ("github_url space", with(&["context", "github_url"], json!("https://git hub.com/a"))),
        ("github_url bad port", with(&["context", "github_url"], json!("https://github.com:99999/a"))),
        ("timestamp", with(&["context", "timestamp"], json!("yesterday"))),
        ("timestamp number", with(&["context", "timestamp"], json!(1763640000))),
        ("service_type", with(&["context", "service_type"], json!("batch"))),
        ("service_type number", with(&["context", "service_type"], json!(1))),
        ("runtime_env", with(&["context", "runtime_env"], json!("staging"))),
        ("time_slot", with(&["context", "time_slot"], json!("night"))),
        ("weight zero", with(&["context", "weight"], json!(0))),
        ("weight negative", with(&["context", "weight"], json!(-1.5))),
        ("weight string", with(&["context", "weight"], json!("1.0"))),
        ("weight huge", with(&["context", "weight"], json!(1e300))),
        ("expected_users negative", with(&["context", "expected_users"], json!(-1))),
        ("expected_users fraction", with(&["context", "expected_users"], json!(1.5))),
        ("expected_users string", with(&["context", "expected_users"], json!("many"))),
        ("expected_users huge", with(&["context", "expected_users"], json!(1e15))),
        ("region long", with(&["context", "region"], json!("r".repeat(65)))),
        ("region number", with(&["context", "region"], json!(5))),
        ("curr_cpu over", with(&["context", "curr_cpu"], json!(150))),
        ("curr_mem negative", with(&["context", "curr_mem"], json!(-0.1))),
        ("requirements object", with(&["requirements"], json!({"a": 1}))),
        ("requirements long", with(&["requirements"], json!("r".repeat(4097)))),
        ("number out of range", r#"{"service_id":"s","metric_name":"total_events","context":{"github_url":"https://x.io","weight":1e999}}"#.into()),
    ];
    let mut out = String::new();
    for (name, b) in &cases {
        let (status, _, text) = k.post_plan(b, None).await;
        assert!(status.is_client_error(), "{name}: {status} {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{text}"
        );
        out.push_str(&format!("{name}: {} {text}\n", status.as_u16()));
    }
    // wrong media type, too large a body
    let (status, _, text) = k
        .send(
            Request::post("/plans")
                .header("content-type", "text/plain")
                .body(Body::from(ok.to_string()))
                .unwrap(),
        )
        .await;
    out.push_str(&format!("text/plain: {} {text}\n", status.as_u16()));
    let small = kit(KitOptions {
        http: HttpConfig {
            max_body_bytes: 1024,
            ..HttpConfig::default()
        },
        ..KitOptions::default()
    });
    let huge = with(&["requirements"], json!("r".repeat(2000)));
    let (status, _, text) = small.post_plan(&huge, None).await;
    out.push_str(&format!("too large: {} {text}\n", status.as_u16()));
    // wrong method, unknown route: JSON too
    let (status, headers, text) = k.get("/plans", None).await;
    assert!(headers.contains_key("allow"));
    out.push_str(&format!("GET /plans: {} {text}\n", status.as_u16()));
    insta::assert_snapshot!(out);
}

fn auth_kit(rate: f64, burst: u32) -> (Kit, Arc<KeyCache>) {
    let cache = Arc::new(KeyCache::new(None, Duration::from_secs(1)));
    let k = kit(KitOptions {
        api: ApiConfig {
            auth: true,
            rate_limit_per_sec: rate,
            rate_limit_burst: burst,
            ..ApiConfig::default()
        },
        auth: Some(cache.clone()),
        ..KitOptions::default()
    });
    (k, cache)
}

#[tokio::test]
async fn auth_answers_401_403_and_keeps_open_paths_open() {
    let (k, keys) = auth_kit(0.0, 1);
    k.cache_forecast("svc", shape("quiet"), T0).await;
    let (id, token, hash) = generate();
    // the key table has not been read: 503, not a silent pass
    let (status, _, text) = k.post_plan(&body(None, None), Some(&token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    keys.load([(id.clone(), hash, false)]);
    let (status, headers, text) = k.post_plan(&body(None, None), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert!(text.contains("\"code\":\"unauthorized\""));
    let (other_id, other, _) = generate();
    assert_ne!(other_id, id);
    assert_eq!(
        k.post_plan(&body(None, None), Some(&other)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        k.post_plan(&body(None, None), Some("garbage")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, text) = k.post_plan(&body(None, None), Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(k.get("/v1/ping", Some(&token)).await.0, StatusCode::OK);
    assert_eq!(k.get("/v1/ping", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(k.get("/v1/servers", None).await.0, StatusCode::UNAUTHORIZED);
    for open in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert_eq!(k.get(open, None).await.0, StatusCode::OK, "{open}");
    }
    keys.load([(id, hash, true)]);
    let (status, _, text) = k.post_plan(&body(None, None), Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("revoked"));
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let (k, keys) = auth_kit(2.0, 3);
    let (id, token, hash) = generate();
    let (id2, token2, hash2) = generate();
    keys.load([(id, hash, false), (id2, hash2, false)]);
    for _ in 0..3 {
        assert_eq!(k.get("/v1/ping", Some(&token)).await.0, StatusCode::OK);
    }
    let (status, headers, text) = k.get("/v1/ping", Some(&token)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert_eq!(headers["retry-after"], "1");
    assert!(text.contains("\"code\":\"rate_limited\""));
    // per key: the other key is not affected
    assert_eq!(k.get("/v1/ping", Some(&token2)).await.0, StatusCode::OK);
    // after Retry-After the key passes again
    k.clock.fetch_add(1000, Ordering::SeqCst);
    assert_eq!(k.get("/v1/ping", Some(&token)).await.0, StatusCode::OK);
    let text = k.get("/metrics", None).await.2;
    assert!(text.contains("mcpwatch_api_rate_limited_total 1"), "{text}");
}

#[tokio::test]
async fn openapi_document_names_every_route() {
    let k = kit(KitOptions::default());
    let (status, _, text) = k.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&text).unwrap();
    for p in [
        "/plans",
        "/v1/servers",
        "/v1/servers/{id}/metrics",
        "/v1/servers/{id}/forecast",
        "/v1/servers/{id}/trend",
        "/v1/stats",
    ] {
        assert!(v["paths"][p].is_object(), "{p} missing");
    }
    let plan = &v["components"]["schemas"]["PlanResponse"]["properties"];
    for f in [
        "prediction",
        "recommended_flavor",
        "min_instances",
        "max_instances",
        "expected_cost_per_day",
        "generated_at",
    ] {
        assert!(plan[f].is_object(), "{f}");
    }
}

// ----- hostile input -------------------------------------------------------------------

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".*".prop_map(Value::String),
        "\\PC{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,12}|\\PC{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid request with one field replaced by something arbitrary.
fn mutated() -> impl Strategy<Value = Value> {
    let fields = prop_oneof![
        Just(vec!["service_id"]),
        Just(vec!["metric_name"]),
        Just(vec!["requirements"]),
        Just(vec!["context"]),
        Just(vec!["context", "github_url"]),
        Just(vec!["context", "timestamp"]),
        Just(vec!["context", "service_type"]),
        Just(vec!["context", "runtime_env"]),
        Just(vec!["context", "time_slot"]),
        Just(vec!["context", "weight"]),
        Just(vec!["context", "expected_users"]),
        Just(vec!["context", "region"]),
        Just(vec!["context", "curr_cpu"]),
        Just(vec!["context", "curr_mem"]),
    ];
    (fields, any_json()).prop_map(|(path, v)| {
        let mut b = json!({"service_id": "svc", "metric_name": "total_events",
            "context": {"github_url": "https://github.com/acme/svc"}});
        if path.len() == 1 {
            b[path[0]] = v;
        } else {
            b[path[0]][path[1]] = v;
        }
        b
    })
}

fn raw_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any_json().prop_map(|v| v.to_string().into_bytes()),
        mutated().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..256),
        "\\PC{0,200}".prop_map(String::into_bytes),
        // a valid body padded far past the limit, or deeply nested
        (1usize..4).prop_map(
            |n| format!("{{\"requirements\":\"{}\"}}", "é".repeat(n * 40_000)).into_bytes()
        ),
        (1usize..2000).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
    ]
}

fn check_answer(status: StatusCode, text: &str) -> Result<(), TestCaseError> {
    prop_assert!(!status.is_server_error(), "{} {}", status, text);
    if status == StatusCode::OK {
        let p: PlanResponse = serde_json::from_str(text)
            .map_err(|e| TestCaseError::fail(format!("200 without a plan ({e}): {text}")))?;
        prop_assert_eq!(p.prediction.predictions.len(), 24);
        prop_assert!(["small", "medium", "large"].contains(&p.recommended_flavor.as_str()));
        prop_assert!(p
            .prediction
            .predictions
            .iter()
            .all(|x| x.value.is_finite() && x.value >= 0.0));
    } else {
        prop_assert!(status.is_client_error(), "{} {}", status, text);
        let v: Value = serde_json::from_str(text)
            .map_err(|e| TestCaseError::fail(format!("{status} without JSON ({e}): {text}")))?;
        prop_assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{}",
            text
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn hostile_bodies_get_a_plan_or_a_json_4xx(body in raw_body(), json_ct in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let k = kit(KitOptions::default());
            k.feed("svc", 30, |h| 50.0 + h as f64);
            let mut b = Request::post("/plans");
            if json_ct {
                b = b.header("content-type", "application/json");
            }
            let (status, _, text) = k.send(b.body(Body::from(body)).unwrap()).await;
            check_answer(status, &text)
        })?;
    }
}
