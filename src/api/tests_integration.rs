//! The API against the real PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379): keys
//! created and revoked in the table, plans recorded in the partitioned `plans` table, metrics
//! read through Redis with the PostgreSQL fallback, trends from `samples`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::audit::{self, AuditArgs};
use super::auth::{create_key, list_keys, revoke_key, KeyCache};
use super::metrics::ApiMetrics;
use super::testkit::{kit, KitOptions};
use super::ApiConfig;
use crate::cache::{CacheConfig, CacheMetrics, CacheWriter, HotCache, KeySpace, RedisCache};
use crate::store::Partitions;
use crate::testing::fresh_store;

fn redis_url() -> String {
    std::env::var("MCPWATCH_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key revoked in PostgreSQL is refused within the refresh period (plus one query).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_takes_effect_within_the_refresh_period() {
    let (pool, _) = fresh_store("api_keys").await;
    let refresh = Duration::from_millis(200);
    let keys = Arc::new(KeyCache::new(Some(pool.clone()), refresh));
    let shutdown = CancellationToken::new();
    let refresher = tokio::spawn(keys.clone().run_refresher(shutdown.clone()));
    let k = kit(KitOptions {
        api: ApiConfig {
            auth: true,
            rate_limit_per_sec: 0.0,
            ..ApiConfig::default()
        },
        auth: Some(keys.clone()),
        ..KitOptions::default()
    });
    let key = create_key(&pool, "ci").await.unwrap();
    // a new key is accepted within the bound too
    let deadline = Instant::now() + Duration::from_secs(5);
    while k.get("/v1/ping", Some(&key.token)).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "new key never accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    revoke_key(&pool, &key.id).await.unwrap();
    let revoked_at = Instant::now();
    loop {
        let status = k.get("/v1/ping", Some(&key.token)).await.0;
        if status == StatusCode::FORBIDDEN {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "revocation never took effect"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = revoked_at.elapsed();
    // the documented bound: one refresh period plus one query (generous margin for a loaded CI)
    assert!(took < refresh + Duration::from_millis(800), "took {took:?}");
    let listed = list_keys(&pool).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked_at.is_some());
    assert!(revoke_key(&pool, "nope").await.is_err());
    // only the hash is stored
    let client = pool.get().await.unwrap();
    let row = client
        .query_one("SELECT secret_hash FROM api_keys WHERE id = $1", &[&key.id])
        .await
        .unwrap();
    let stored: Vec<u8> = row.get(0);
    assert_eq!(stored.len(), 32);
    let secret = key.token.rsplit('_').next().unwrap();
    assert_eq!(stored, super::auth::secret_hash(secret).to_vec());
    shutdown.cancel();
    refresher.await.unwrap();
}

/// Plans are answered from a forecast in Redis and recorded in PostgreSQL with the key id;
/// metrics come from PostgreSQL first, then from Redis; trends from `samples`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_audit_metrics_and_trend_on_real_services() {
    let (pool, _) = fresh_store("api_it").await;
    let prefix = format!("mcpwatch-test-api-{}", std::process::id());
    let cache_config = CacheConfig {
        url: redis_url(),
        key_prefix: prefix.clone(),
        ..CacheConfig::default()
    };
    let redis: Arc<dyn HotCache> = Arc::new(
        RedisCache::connect(&cache_config, Arc::new(CacheMetrics::new()))
            .await
            .unwrap(),
    );
    let metrics = ApiMetrics::default();
    let (audit_tx, audit_task) = audit::start(AuditArgs {
        table: audit::AuditTable::Postgres {
            pool: pool.clone(),
            partitions: Arc::new(Partitions::default()),
        },
        queue: 100,
        batch: 10,
        metrics: metrics.clone(),
    });
    let keys = Arc::new(KeyCache::new(Some(pool.clone()), Duration::from_secs(1)));
    let key = create_key(&pool, "integration").await.unwrap();
    keys.refresh().await.unwrap();
    let mut k = kit(KitOptions {
        api: ApiConfig {
            auth: true,
            rate_limit_per_sec: 0.0,
            ..ApiConfig::default()
        },
        pool: Some(pool.clone()),
        auth: Some(keys),
        audit: Some(audit_tx),
        metrics: metrics.clone(),
        ..KitOptions::default()
    });
    // point the kit at Redis (with its writer, for read-repair) instead of the in-process cache
    let cache_metrics = Arc::new(CacheMetrics::new());
    let writer = CacheWriter::start(redis.clone(), &cache_config, cache_metrics.clone()).await;
    {
        let core = Arc::get_mut(&mut k.state.core).unwrap();
        core.cache = Some(redis.clone());
        core.read = crate::cache::ReadThrough::new(Some(redis.clone()), cache_metrics.clone())
            .with_writer(&writer);
        core.cache_metrics = cache_metrics.clone();
        core.refill = Some(writer.sender());
        core.keys = KeySpace::new(&prefix);
    }
    let now = k.state.core.now_ms();
    let keyspace = KeySpace::new(&prefix);
    let forecast = json!({"service_id": "it-svc", "model_version": "baseline_web_v1",
        "routed_version": "baseline_web_v1", "fallback_reason": null,
        "first_bucket_ms": super::testkit::T0, "step_ms": 3_600_000, "values": vec![120.0; 24]});
    redis
        .put_batch(&[keyspace.entry(
            crate::cache::Tier::Forecast,
            "it-svc",
            crate::cache::kind::FORECAST,
            forecast.to_string(),
        )])
        .await
        .unwrap();

    let body = json!({"service_id": "it-svc", "metric_name": "total_events",
        "requirements": "keep p99 under 200 ms",
        "context": {"github_url": "https://github.com/acme/it", "expected_users": 6000}});
    let (status, _, text) = k.post_plan(&body.to_string(), Some(&key.token)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let plan: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(plan["recommended_flavor"], "large");
    assert_eq!(plan["prediction"]["predictions"][0]["value"], 720.0);
    // the audit row arrives (off the request path)
    let client = pool.get().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let rows = client
            .query(
                "SELECT key_id, service_id, context, requirements, forecast_source, \
                        recommended_flavor, response::text FROM plans",
                &[],
            )
            .await
            .unwrap();
        if let Some(r) = rows.into_iter().next() {
            break r;
        }
        assert!(Instant::now() < deadline, "plan never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some(key.id.as_str())
    );
    assert_eq!(row.get::<_, String>(1), "it-svc");
    let ctx: String = client
        .query_one("SELECT context->>'time_slot' FROM plans", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ctx, "normal");
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some("keep p99 under 200 ms")
    );
    assert_eq!(row.get::<_, String>(4), "cache");
    assert_eq!(row.get::<_, String>(5), "large");
    assert_eq!(
        serde_json::from_str::<Value>(&row.get::<_, String>(6)).unwrap(),
        plan
    );
    assert_eq!(metrics.audit_written.get(), 1);

    // samples for the metrics and trend endpoints: the previous hour fast, the last hour slow
    let t = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
    let day = crate::store::copy::day_of(now);
    Partitions::default()
        .ensure(&client, "samples", day - 1..=day)
        .await
        .unwrap();
    for i in 0..120i64 {
        let ts = now - 2 * 3_600_000 + i * 60_000 + 1000;
        let rt = if i < 60 { 100.0 } else { 150.0 };
        client
            .execute(
                "INSERT INTO samples (service_id, ts, series, origin, cpu, response_time_ms, requests, errors) \
                 VALUES ('it-svc', $1, 0, 0, 0.5, $2, 10, 0)",
                &[&t(ts), &rt],
            )
            .await
            .unwrap();
    }
    let uri = format!(
        "/v1/servers/it-svc/metrics?from={}&to={}&step=10m",
        now - 2 * 3_600_000,
        now
    );
    let (status, _, text) = k.get(&uri, Some(&key.token)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let first: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(first["source"], "database", "{text}");
    let samples: i64 = first["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["samples"].as_i64().unwrap())
        .sum();
    assert_eq!(samples, 120);
    assert!(first["response_time_ms"].as_f64().unwrap() >= 0.0);
    // the database answer was offered back to Redis (read-repair through the writer): the
    // same range is then served from the cache
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        let (status, _, text) = k.get(&uri, Some(&key.token)).await;
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["source"] == "cache" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "never served from the cache: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(second["points"], first["points"]);
    assert!(cache_metrics.reads_served(crate::cache::Source::Cache) >= 1);

    let (status, _, text) = k
        .get("/v1/servers/it-svc/trend?window=1h", Some(&key.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let trend: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(trend["trend"], "degrading", "{text}");
    assert!(
        (trend["response_time_change"].as_f64().unwrap() - 0.5).abs() < 0.05,
        "{text}"
    );
    assert_eq!(
        trend["current"]["samples"].as_i64().unwrap()
            + trend["previous"]["samples"].as_i64().unwrap(),
        120
    );
    let (status, _, _) = k.get("/v1/servers/nobody/trend", Some(&key.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _, text) = k.get("/v1/stats", Some(&key.token)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let stats: Value = serde_json::from_str(&text).unwrap();
    let score = stats["health"]["score"].as_u64().unwrap();
    assert!(score <= 100);
    assert_eq!(stats["cache"]["backend"], "redis");

    drop(k);
    writer.close().await;
    tokio::time::timeout(Duration::from_secs(10), audit_task)
        .await
        .expect("audit writer drains and stops")
        .unwrap();
}
