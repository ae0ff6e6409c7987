//! `GET /v1/anomalies?service=&since=&min_score=&limit=`: recent anomalies, newest first.
//!
//! With a `service`, the answer comes from the hot cache when the service's cached list
//! ([`CachedAnomalies`]) is complete for the asked window; otherwise (no service, a window older
//! than the cache holds, a cache miss or no cache) from PostgreSQL. The body says which:
//! `"source": "cache" | "database"`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use crate::alert::Anomaly;
use crate::anomaly::sink::{self, AnomalyQuery};
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
    pub pool: deadpool_postgres::Pool,
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

/// The cached answer, when the cache holds a complete one.
async fn from_cache(api: &AnomalyApi, q: &AnomalyQuery) -> Option<Vec<Anomaly>> {
    let service = q.service.as_deref()?;
    let cache = api.cache.as_ref()?;
    if !cache.is_available() {
        return None;
    }
    let key = api.keys.key(CACHE_TIER, service, CACHE_KIND);
    let bytes = cache.get(&key).await.ok()??;
    let cached: CachedAnomalies = serde_json::from_slice(&bytes).ok()?;
    let hits: Vec<Anomaly> = cached
        .anomalies
        .into_iter()
        .filter(|a| q.matches(a))
        .take(q.limit)
        .collect();
    // complete when the window is covered, or when the cache alone fills the limit
    (q.since_ms >= cached.since_ms || hits.len() == q.limit).then_some(hits)
}

pub async fn list(
    State(state): State<ApiState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<AnomaliesResponse>, ApiError> {
    let Query(params) = params.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
    })?;
    let api = state
        .anomalies
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("anomaly detection is not running"))?;
    let q = parse_query(&params, (api.clock)())?;
    let (anomalies, source) = match from_cache(api, &q).await {
        Some(hits) => (hits, Source::Cache),
        None => {
            let rows = sink::query(&api.pool, &q).await.map_err(|e| {
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
