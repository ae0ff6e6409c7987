//! `GET /v1/anomalies?service=&since=&min_score=&limit=`: recent anomalies, newest first.
//!
//! With a `service`, the answer comes from the hot cache when the service's cached list
//! ([`CachedAnomalies`]) is complete for the asked window; otherwise (no service, a window older
//! than the cache holds, a cache miss or no cache) from the `anomalies` table, in PostgreSQL or
//! in the embedded store ([`AnomalyTable`]). The body says which: `"source": "cache" |
//! "database"` (the table, whichever store holds it).
//!
//! Without a table, a service's question is answered from the cache alone (what the detection
//! stage holds for it; a miss is an empty list), and a question across services, which only a
//! table can answer, is a 503 saying so.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use crate::alert::Anomaly;
use crate::anomaly::sink::{AnomalyQuery, AnomalyTable};
use crate::anomaly::stage::{CachedAnomalies, CACHE_KIND, CACHE_TIER};
use crate::api::{ApiError, ApiState};
use crate::cache::{HotCache, KeySpace, Source};

/// Default window: the last 24 hours.
const DEFAULT_WINDOW_MS: i64 = 86_400_000;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// What `/v1/anomalies` reads.
#[derive(Clone)]
pub struct AnomalyApi {
    /// The anomalies table (`None`: no table, the cache is all there is).
    pub table: Option<AnomalyTable>,
    /// The hot cache (`None`: every read goes to PostgreSQL).
    pub cache: Option<Arc<dyn HotCache>>,
    pub keys: KeySpace,
    /// Wall clock, epoch ms (the default `since`).
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

#[derive(Serialize)]
pub struct AnomalyView {
    pub service_id: String,
    pub metric: String,
    pub source: &'static str,
    /// RFC 3339.
    pub ts: String,
    pub ts_ms: i64,
    pub score: f64,
    pub value: f64,
    pub expected: Option<f64>,
    pub severity: &'static str,
    pub detector: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl From<Anomaly> for AnomalyView {
    fn from(a: Anomaly) -> Self {
        AnomalyView {
            ts: crate::alert::discord::rfc3339(a.ts_ms),
            service_id: a.service_id,
            metric: a.metric,
            source: a.source.as_str(),
            ts_ms: a.ts_ms,
            score: a.score,
            value: a.value,
            expected: a.expected,
            severity: a.severity.as_str(),
            detector: a.detector,
            message: a.message,
        }
    }
}

#[derive(Serialize)]
pub struct AnomaliesResponse {
    /// Who answered: `cache` or `database`.
    pub source: Source,
    pub count: usize,
    pub anomalies: Vec<AnomalyView>,
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message).with_field(field)
}

/// Parses the query string; every problem names its parameter.
pub fn parse_query(
    params: &HashMap<String, String>,
    now_ms: i64,
) -> Result<AnomalyQuery, ApiError> {
    for key in params.keys() {
        if !matches!(key.as_str(), "service" | "since" | "min_score" | "limit") {
            return Err(bad(
                key,
                format!("unknown parameter `{key}` (known: service, since, min_score, limit)"),
            ));
        }
    }
    let service = match params.get("service").map(|s| s.trim()) {
        None => None,
        Some("") => return Err(bad("service", "`service` must not be empty")),
        Some(s) if s.len() > 256 => {
            return Err(bad("service", "`service` is longer than 256 bytes"))
        }
        Some(s) => Some(s.to_string()),
    };
    let since_ms = match params.get("since").map(|s| s.trim()) {
        None => now_ms - DEFAULT_WINDOW_MS,
        Some(s) => parse_time(s).ok_or_else(|| {
            bad(
                "since",
                format!("`since` must be RFC 3339 (2025-01-31T12:00:00Z) or epoch milliseconds, got {s:?}"),
            )
        })?,
    };
    let min_score = match params.get("min_score") {
        None => 0.0,
        Some(s) => match s.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => v,
            _ => {
                return Err(bad(
                    "min_score",
                    format!("`min_score` must be a number within [0, 1], got {s:?}"),
                ))
            }
        },
    };
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(s) => match s.trim().parse::<usize>() {
            Ok(v) if (1..=MAX_LIMIT).contains(&v) => v,
            _ => {
                return Err(bad(
                    "limit",
                    format!("`limit` must be an integer within 1..={MAX_LIMIT}, got {s:?}"),
                ))
            }
        },
    };
    Ok(AnomalyQuery {
        service,
        since_ms,
        min_score,
        limit,
    })
}

fn parse_time(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// What the cache holds for the query's service: `None` on a cache error, no cache or no
/// service; an empty list on a miss; else the hits and whether they are complete for the
/// asked window.
async fn cached(api: &AnomalyApi, q: &AnomalyQuery) -> Option<(Vec<Anomaly>, bool)> {
    let service = q.service.as_deref()?;
    let cache = api.cache.as_ref()?;
    if !cache.is_available() {
        return None;
    }
    let key = api.keys.key(CACHE_TIER, service, CACHE_KIND);
    let Some(bytes) = cache.get(&key).await.ok()? else {
        return Some((Vec::new(), false));
    };
    let cached: CachedAnomalies = serde_json::from_slice(&bytes).ok()?;
    let hits: Vec<Anomaly> = cached
        .anomalies
        .into_iter()
        .filter(|a| q.matches(a))
        .take(q.limit)
        .collect();
    // complete when the window is covered, or when the cache alone fills the limit
    let complete = q.since_ms >= cached.since_ms || hits.len() == q.limit;
    Some((hits, complete))
}

pub async fn list(
    State(state): State<ApiState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<AnomaliesResponse>, ApiError> {
    let Query(params) = params
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let api = state
        .anomalies
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("anomaly detection is not running"))?;
    let q = parse_query(&params, (api.clock)())?;
    let hits = cached(api, &q).await;
    let (anomalies, source) = match (hits, &api.table) {
        (Some((hits, true)), _) => (hits, Source::Cache),
        // no table: what the cache holds is the whole answer
        (Some((hits, false)), None) => (hits, Source::Cache),
        (None, None) => {
            return Err(ApiError::unavailable(if q.service.is_some() {
                "anomalies are not stored here and the cache cannot answer"
            } else {
                "anomalies are not stored here: ask for one service (?service=…), answered \
                 from the cache"
            }))
        }
        (_, Some(table)) => {
            let rows = table.query(&q).await.map_err(|e| {
                tracing::warn!(error = %e, "anomaly query failed");
                ApiError::unavailable("the anomaly store is unavailable")
            })?;
            (rows, Source::Database)
        }
    };
    Ok(Json(AnomaliesResponse {
        source,
        count: anomalies.len(),
        anomalies: anomalies.into_iter().map(AnomalyView::from).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::alert::{AnomalySource, Severity};
    use crate::anomaly::{AnomalyMetrics, AnomalyStore, SinkArgs};
    use crate::api::app;
    use crate::cache::{CacheConfig, CacheMetrics, Entry, MemoryCache};
    use crate::store::Partitions;
    use crate::testing::fresh_store;

    const HOUR: i64 = 3_600_000;

    fn anomaly(service: &str, metric: &str, ts_ms: i64, score: f64) -> Anomaly {
        Anomaly {
            service_id: service.into(),
            metric: metric.into(),
            source: AnomalySource::Stream,
            ts_ms,
            score,
            value: 10.0 * score,
            expected: Some(1.5),
            severity: Severity::from_score(score, 0.8),
            detector: "mcpwatch".into(),
            message: None,
        }
    }

    fn state(api: AnomalyApi) -> ApiState {
        // the API's test kit (auth off), with detection on
        let mut state = crate::api::testkit::kit(Default::default()).state;
        state.anomalies = Some(api);
        state
    }

    /// The answer to `?since=` over the seeded anomalies: every service, newest first, from
    /// the table.
    fn assert_every_service_newest_first(status: StatusCode, v: &serde_json::Value) {
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["source"], "database");
        let metrics_in_order: Vec<&str> = v["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["metric"].as_str().unwrap())
            .collect();
        assert_eq!(
            metrics_in_order,
            ["requests", "response_time", "errors", "cpu"]
        );
        let first = &v["anomalies"][0];
        assert_eq!(first["service_id"], "gh");
        assert_eq!(first["score"], 0.35);
        assert_eq!(first["expected"], 1.5);
        assert_eq!(first["severity"], "warning");
        assert_eq!(first["source"], "stream");
    }

    async fn get(app: axum::Router, uri: &str) -> (StatusCode, Value) {
        let response = app
            .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// Anomalies go through the batching writer into the real PostgreSQL (daily partitions
    /// created on the fly, replays idempotent) and come back through the route.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_anomalies_are_served_from_postgres_and_from_the_cache() {
        let (pool, _config) = fresh_store("anomalies_api").await;
        let now = crate::daemon::now_ms();
        let day = now;
        // two days back: that day's partition is created by the writer itself
        let rows = vec![
            anomaly("fs", "cpu", day - 2 * 24 * HOUR, 0.9),
            anomaly("fs", "errors", day - 3 * HOUR, 0.4),
            anomaly("fs", "response_time", day - 2 * HOUR, 0.7),
            anomaly("gh", "requests", day - HOUR, 0.35),
        ];
        let metrics = AnomalyMetrics::default();
        let partitions = Arc::new(Partitions::default());
        let start = |batch_rows| {
            AnomalyStore::start(SinkArgs {
                table: AnomalyTable::Postgres {
                    pool: pool.clone(),
                    partitions: partitions.clone(),
                },
                batch_rows,
                flush_ms: 50,
                queue_rows: 100,
                metrics: metrics.clone(),
                shutdown: tokio_util::sync::CancellationToken::new(),
            })
        };
        let store = start(2);
        for a in &rows {
            assert!(store.sink().offer(a.clone()));
        }
        store.close().await;
        assert_eq!(metrics.stored.get(), 4);
        // a replay of the same points updates them instead of adding rows
        let store = start(10);
        store.sink().offer(rows[1].clone());
        store.sink().offer(rows[1].clone());
        store.close().await;
        let client = pool.get().await.unwrap();
        let n: i64 = client
            .query_one("SELECT count(*) FROM anomalies", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 4);
        let parts: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent \
                 WHERE c.relname = 'anomalies' \
                 AND c.relnamespace = 'test_anomalies_api'::regnamespace",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(parts >= 3, "daily partitions: {parts}");

        let cache_config = CacheConfig::default();
        let memory = Arc::new(MemoryCache::new(
            &cache_config,
            Arc::new(CacheMetrics::new()),
        ));
        let keys = KeySpace::new("anomalies-api-test");
        let api = AnomalyApi {
            table: Some(AnomalyTable::Postgres {
                pool: pool.clone(),
                partitions: partitions.clone(),
            }),
            cache: Some(memory.clone()),
            keys: keys.clone(),
            clock: Arc::new(move || now),
        };
        let since = day - 3 * 24 * HOUR;

        // every service, newest first, from PostgreSQL
        let (status, v) = get(
            app(state(api.clone())),
            &format!("/v1/anomalies?since={since}"),
        )
        .await;
        assert_every_service_newest_first(status, &v);

        // one service, a score floor, a limit; the default window is the last 24 h
        let (_, v) = get(
            app(state(api.clone())),
            "/v1/anomalies?service=fs&min_score=0.5",
        )
        .await;
        assert_eq!(v["count"], 1, "{v}");
        assert_eq!(v["anomalies"][0]["metric"], "response_time");
        let rfc = crate::alert::discord::rfc3339(since).replace('+', "%2B");
        let (_, v) = get(
            app(state(api.clone())),
            &format!("/v1/anomalies?service=fs&since={rfc}&limit=2"),
        )
        .await;
        assert_eq!(v["count"], 2, "{v}");
        assert_eq!(v["anomalies"][1]["metric"], "errors");

        // the stage's cached list answers when it covers the window
        let cached = CachedAnomalies {
            since_ms: day - 4 * HOUR,
            anomalies: vec![rows[2].clone(), rows[1].clone()],
        };
        memory
            .put_batch(&[Entry::new(
                keys.key(CACHE_TIER, "fs", CACHE_KIND),
                CACHE_TIER,
                serde_json::to_vec(&cached).unwrap(),
            )])
            .await
            .unwrap();
        let (_, v) = get(
            app(state(api.clone())),
            &format!("/v1/anomalies?service=fs&since={}", day - 4 * HOUR),
        )
        .await;
        assert_eq!(v["source"], "cache", "{v}");
        assert_eq!(v["count"], 2);
        // ...and not when the window reaches further back than the cache is complete
        let (_, v) = get(
            app(state(api.clone())),
            &format!("/v1/anomalies?service=fs&since={since}"),
        )
        .await;
        assert_eq!(v["source"], "database", "{v}");
        assert_eq!(v["count"], 3);
    }

    /// On the embedded store anomalies go through the same batching writer into Arrow files
    /// (a replayed point is read back once, as last written), come back through the route
    /// newest first, survive a reopen, and `/v1/query`'s DataFusion reads the same table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_anomalies_are_served_from_the_embedded_store() {
        let root =
            std::env::temp_dir().join(format!("mcpwatch-anomalies-local-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let open = || {
            crate::store::LocalStore::open(crate::store::LocalStoreArgs {
                root: root.clone(),
                consumer_group: "g".into(),
                metrics: Default::default(),
            })
            .unwrap()
        };
        let now = crate::daemon::now_ms();
        let rows = vec![
            anomaly("fs", "cpu", now - 2 * 24 * HOUR, 0.9),
            anomaly("fs", "errors", now - 3 * HOUR, 0.4),
            anomaly("fs", "response_time", now - 2 * HOUR, 0.7),
            anomaly("gh", "requests", now - HOUR, 0.35),
        ];
        let metrics = AnomalyMetrics::default();
        let start = |table: AnomalyTable| {
            AnomalyStore::start(SinkArgs {
                table,
                batch_rows: 2,
                flush_ms: 50,
                queue_rows: 100,
                metrics: metrics.clone(),
                shutdown: tokio_util::sync::CancellationToken::new(),
            })
        };
        let store = open();
        let writer = start(AnomalyTable::local(&store).unwrap());
        for a in &rows {
            assert!(writer.sink().offer(a.clone()));
        }
        writer.close().await;
        assert_eq!(metrics.stored.get(), 4);
        // a replay of a point with a new score: read back once, as last written
        let mut replayed = rows[1].clone();
        replayed.score = 0.45;
        let writer = start(AnomalyTable::local(&store).unwrap());
        writer.sink().offer(replayed.clone());
        writer.close().await;
        drop(store);

        let store = open();
        let api = AnomalyApi {
            table: Some(AnomalyTable::local(&store).unwrap()),
            cache: None,
            keys: KeySpace::new("anomalies-local-test"),
            clock: Arc::new(move || now),
        };
        let since = now - 3 * 24 * HOUR;
        let (status, v) = get(
            app(state(api.clone())),
            &format!("/v1/anomalies?since={since}"),
        )
        .await;
        assert_every_service_newest_first(status, &v);
        assert_eq!(v["anomalies"][2]["score"], 0.45, "{v}");
        // one service, a score floor; the default window is the last 24 h
        let (_, v) = get(
            app(state(api.clone())),
            "/v1/anomalies?service=fs&min_score=0.5",
        )
        .await;
        assert_eq!(v["count"], 1, "{v}");
        assert_eq!(v["anomalies"][0]["metric"], "response_time");
        let (_, v) = get(
            app(state(api.clone())),
            &format!("/v1/anomalies?service=fs&since={since}&limit=2"),
        )
        .await;
        assert_eq!(v["count"], 2, "{v}");

        // DataFusion sees the same table (the replay is a second row there)
        let ctx = crate::lifecycle::query::context_over(std::slice::from_ref(&root))
            .await
            .unwrap();
        let r = crate::lifecycle::query::run_query(
            &ctx,
            "SELECT count(*) AS n, count(DISTINCT metric) AS m FROM anomalies",
            None,
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
        let rows = crate::lifecycle::query::to_json_rows(&r).unwrap();
        assert_eq!(rows[0]["n"], 5, "{rows}");
        assert_eq!(rows[0]["m"], 4, "{rows}");
        std::fs::remove_dir_all(&root).ok();
    }

    /// Without a table (the embedded store before it kept anomalies, or no store at all), a
    /// service is answered from the cache, even for a window the cache does not cover, and a
    /// question across services is a 503 saying why; nothing connects anywhere.
    #[tokio::test]
    async fn without_a_table_the_cache_answers_for_a_service() {
        let now = 1_800_000_000_000;
        let memory = Arc::new(MemoryCache::new(
            &CacheConfig::default(),
            Arc::new(CacheMetrics::new()),
        ));
        let keys = KeySpace::new("anomalies-no-table");
        let cached = CachedAnomalies {
            since_ms: now - 2 * HOUR,
            anomalies: vec![anomaly("fs", "cpu", now - HOUR, 0.9)],
        };
        memory
            .put_batch(&[Entry::new(
                keys.key(CACHE_TIER, "fs", CACHE_KIND),
                CACHE_TIER,
                serde_json::to_vec(&cached).unwrap(),
            )])
            .await
            .unwrap();
        let api = AnomalyApi {
            table: None,
            cache: Some(memory),
            keys,
            clock: Arc::new(move || now),
        };
        // the default window (24 h) reaches past what the cache covers: still the cache
        let (status, v) = get(app(state(api.clone())), "/v1/anomalies?service=fs").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["source"], "cache");
        assert_eq!(v["count"], 1);
        // a service with nothing cached has no anomalies
        let (status, v) = get(app(state(api.clone())), "/v1/anomalies?service=gh").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["count"], 0);
        // across services only a table could answer
        let (status, v) = get(app(state(api.clone())), "/v1/anomalies").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        assert_eq!(v["error"]["code"], "unavailable");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("service"),
            "{v}"
        );
        // no cache either: 503 for a service too
        let none = AnomalyApi { cache: None, ..api };
        let (status, _) = get(app(state(none)), "/v1/anomalies?service=fs").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn bad_queries_get_a_400_naming_the_parameter() {
        let pool = crate::store::pool(&crate::store::StoreConfig::default()).unwrap();
        let api = AnomalyApi {
            table: Some(AnomalyTable::Postgres {
                pool,
                partitions: Default::default(),
            }),
            cache: None,
            keys: KeySpace::new("x"),
            clock: Arc::new(|| 0),
        };
        for (query, field) in [
            ("min_score=2", "min_score"),
            ("min_score=abc", "min_score"),
            ("limit=0", "limit"),
            ("limit=100000", "limit"),
            ("since=yesterday", "since"),
            ("service=", "service"),
            ("sevrice=fs", "sevrice"),
        ] {
            let (status, v) = get(app(state(api.clone())), &format!("/v1/anomalies?{query}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {v}");
            assert_eq!(v["error"]["field"], field, "{query}: {v}");
            assert_eq!(v["error"]["code"], "invalid_query");
        }
        // detection off: 503, not a crash
        let off = ApiState {
            anomalies: None,
            ..state(api)
        };
        let (status, v) = get(app(off), "/v1/anomalies").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    }
}
