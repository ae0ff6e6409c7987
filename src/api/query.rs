//! The read endpoints for dashboards: `GET /v1/servers`, `/v1/servers/{id}/metrics`,
//! `/v1/servers/{id}/forecast`, `/v1/servers/{id}/trend`. Each reads the hot cache first
//! and falls back to PostgreSQL (or the feature engine), and says which one answered
//! (`source`) and how long it took (`response_time_ms`).

use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::plans::{cached_forecast, CachedForecast};
use super::ApiState;
use crate::cache::{kind, SampleView, Source, Tier};
use crate::forecast::{ForecastContext, ForecastInput};

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// A service is `stale` after this long without a sample.
pub const STALE_AFTER_MS: i64 = 300_000;

// ----- /v1/servers ------------------------------------------------------------------------

/// One monitored service.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerInfo {
    pub id: String,
    /// When this replica last received a sample of it.
    pub last_seen: String,
    /// `healthy`, `degraded` or `down` (the latest sample's status), `stale` (nothing for 5
    /// minutes) or `unknown` (the samples carry no status).
    pub status: String,
    /// Closed buckets so far.
    pub buckets: u64,
    /// Start of the newest closed bucket.
    pub last_bucket: Option<String>,
    /// The latest sample, when the hot cache has it.
    #[schema(value_type = Option<Object>)]
    pub latest: Option<serde_json::Value>,
}

/// `GET /v1/servers`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServersResponse {
    pub count: usize,
    /// Services with rolling state in this replica (the list is capped by `limit`).
    pub active: usize,
    pub servers: Vec<ServerInfo>,
    pub generated_at: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServersQuery {
    /// At most this many (by id), default 1000, at most 10000.
    pub limit: Option<usize>,
}

/// Services with their status: the engine's list, the hot cache's latest samples (one
/// round trip for all).
pub(crate) async fn server_list(state: &ApiState, limit: usize) -> (usize, Vec<ServerInfo>) {
    let core = &state.core;
    let now = core.now_ms();
    // (id, last seen, closed buckets, newest bucket start)
    type Row = (String, i64, u64, Option<i64>);
    let (active, mut rows): (usize, Vec<Row>) = {
        let engine = core.engine.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<&str> = engine.service_ids().collect();
        ids.sort_unstable();
        let rows = ids
            .iter()
            .take(limit)
            .filter_map(|id| {
                let s = engine.state(id)?;
                Some((
                    id.to_string(),
                    s.last_seen_ms(),
                    s.rows(),
                    s.last_bucket_start_ms(),
                ))
            })
            .collect();
        (engine.len(), rows)
    };
    rows.truncate(limit);
    let latest: Vec<Option<SampleView>> = match &core.cache {
        Some(cache) if !rows.is_empty() => {
            let keys: Vec<String> = rows
                .iter()
                .map(|(id, ..)| core.keys.key(Tier::Realtime, id, kind::LATEST))
                .collect();
            cache
                .get_many(&keys)
                .await
                .map(|found| {
                    found
                        .into_iter()
                        .map(|b| b.and_then(|b| serde_json::from_slice(&b).ok()))
                        .collect()
                })
                .unwrap_or_else(|_| vec![None; rows.len()])
        }
        _ => vec![None; rows.len()],
    };
    let servers = rows
        .into_iter()
        .zip(latest)
        .map(|((id, seen, buckets, last_bucket), view)| {
            let status = if now - seen > STALE_AFTER_MS {
                "stale".to_string()
            } else {
                view.as_ref()
                    .and_then(|v| v.status.clone())
                    .unwrap_or_else(|| "unknown".into())
            };
            ServerInfo {
                id,
                last_seen: rfc3339(seen),
                status,
                buckets,
                last_bucket: last_bucket.map(rfc3339),
                latest: view.and_then(|v| serde_json::to_value(v).ok()),
            }
        })
        .collect();
    (active, servers)
}

/// `GET /v1/servers`.
#[utoipa::path(get, path = "/v1/servers", params(ServersQuery),
    responses((status = 200, body = ServersResponse)), security(("bearer" = [])))]
pub async fn servers(
    State(state): State<ApiState>,
    Query(q): Query<ServersQuery>,
) -> Json<ServersResponse> {
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let (active, servers) = server_list(&state, limit).await;
    Json(ServersResponse {
        count: servers.len(),
        active,
        servers,
        generated_at: rfc3339(state.core.now_ms()),
    })
}

// ----- /v1/servers/{id}/metrics -------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// RFC 3339 or epoch milliseconds; default `to` − 1 h.
    pub from: Option<String>,
    /// RFC 3339 or epoch milliseconds; default now.
    pub to: Option<String>,
    /// Bucket width: seconds (`60`) or with a unit (`30s`, `5m`, `1h`); default 60 s.
    pub step: Option<String>,
}

/// One bucket of a service's samples.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct MetricPoint {
    pub time: String,
    pub samples: i64,
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub response_time_ms: Option<f64>,
    pub requests: Option<f64>,
    pub errors: Option<f64>,
}

/// `GET /v1/servers/{id}/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetricsResponse {
    pub service_id: String,
    pub from: String,
    pub to: String,
    pub step_secs: i64,
    /// `cache`, `database` or `none` (no samples in the range).
    pub source: String,
    pub response_time_ms: f64,
    pub points: Vec<MetricPoint>,
}

fn bad_query(field: &str, message: String) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "invalid_query",
        message,
    )
    .with_field(field)
}

/// RFC 3339 or epoch milliseconds.
fn parse_time(field: &str, s: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            bad_query(
                field,
                format!("`{field}` must be RFC 3339 or epoch milliseconds, got {s:?}"),
            )
        })
}

/// `90`, `90s`, `5m`, `1h`, `7d` → milliseconds.
pub fn parse_duration_ms(field: &str, s: &str) -> Result<i64, ApiError> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits.parse().map_err(|_| {
        bad_query(
            field,
            format!("`{field}` must be a duration such as 60, 30s, 5m, 1h, got {s:?}"),
        )
    })?;
    let mult = match unit {
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(bad_query(
                field,
                format!("`{field}`: unknown unit {unit:?} (use s, m, h or d)"),
            ))
        }
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| bad_query(field, format!("`{field}` must be positive, got {s:?}")))
}

/// The largest number of points one answer may carry.
pub const MAX_POINTS: i64 = 11_000;

async fn query_points(
    pool: &deadpool_postgres::Pool,
    service_id: &str,
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
) -> Result<Option<Vec<MetricPoint>>, ApiError> {
    let client = pool
        .get()
        .await
        .map_err(|e| ApiError::unavailable(format!("PostgreSQL unavailable: {e}")))?;
    let from = DateTime::<Utc>::from_timestamp_millis(from_ms).unwrap_or_default();
    let to = DateTime::<Utc>::from_timestamp_millis(to_ms).unwrap_or_default();
    let rows = client
        .query(
            "SELECT floor(extract(epoch FROM ts) * 1000 / $4::float8)::bigint AS b, count(*), \
                    avg(cpu), avg(memory), avg(response_time_ms), sum(requests), sum(errors) \
             FROM samples WHERE service_id = $1 AND ts >= $2 AND ts < $3 \
             GROUP BY b ORDER BY b",
            &[&service_id, &from, &to, &(step_ms as f64)],
        )
        .await
        .map_err(|e| ApiError::unavailable(format!("PostgreSQL query failed: {e}")))?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        rows.iter()
            .map(|r| MetricPoint {
                time: rfc3339(r.get::<_, i64>(0) * step_ms),
                samples: r.get(1),
                cpu: r.get(2),
                memory: r.get(3),
                response_time_ms: r.get(4),
                requests: r.get(5),
                errors: r.get(6),
            })
            .collect(),
    ))
}

/// `GET /v1/servers/{id}/metrics?from&to&step`: cache first (the same aligned range within
/// the recent tier's TTL), then PostgreSQL over `samples`, refilling the cache.
#[utoipa::path(get, path = "/v1/servers/{id}/metrics", params(("id" = String, Path), MetricsQuery),
    responses((status = 200, body = MetricsResponse), (status = 400, body = super::error::ErrorBody),
              (status = 503, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn metrics(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> Result<Json<MetricsResponse>, ApiError> {
    let started = Instant::now();
    let core = &state.core;
    let step = match &q.step {
        Some(s) => parse_duration_ms("step", s)?,
        None => 60_000,
    };
    let to = match &q.to {
        Some(s) => parse_time("to", s)?,
        None => core.now_ms(),
    };
    let from = match &q.from {
        Some(s) => parse_time("from", s)?,
        None => to - 3_600_000,
    };
    if from >= to {
        return Err(bad_query("from", "`from` must be before `to`".into()));
    }
    // aligned to the step, so repeated dashboard reads of "the last hour" share a cache entry
    let from = from.div_euclid(step) * step;
    let to = to.div_euclid(step) * step + step;
    if (to - from) / step > MAX_POINTS {
        return Err(bad_query(
            "step",
            format!("the range holds more than {MAX_POINTS} steps; use a larger step"),
        ));
    }
    let key = core
        .keys
        .key(Tier::Recent, &id, &format!("points-{from}-{to}-{step}"));
    let pool = core.pool.clone();
    let (points, source) = core
        .read
        .get_json::<Vec<MetricPoint>, _, _, ApiError>(&key, Tier::Recent, || async {
            match &pool {
                Some(pool) => query_points(pool, &id, from, to, step).await,
                None => Err(ApiError::unavailable("no PostgreSQL configured")),
            }
        })
        .await?;
    Ok(Json(MetricsResponse {
        service_id: id,
        from: rfc3339(from),
        to: rfc3339(to),
        step_secs: step / 1000,
        source: source.as_str().into(),
        response_time_ms: elapsed_ms(started),
        points: points.unwrap_or_default(),
    }))
}

// ----- /v1/servers/{id}/forecast ------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ForecastPoint {
    pub time: String,
    pub value: f64,
}

/// `GET /v1/servers/{id}/forecast`: the latest forecast of `total_events`, per bucket.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ForecastResponse {
    pub service_id: String,
    pub metric_name: String,
    pub model_version: String,
    pub routed_version: String,
    /// Why the routed model did not run, if it did not.
    pub fallback_reason: Option<String>,
    /// `cache` (the continuous loop's) or `computed` (on demand from the feature engine).
    pub source: String,
    pub step_secs: i64,
    pub response_time_ms: f64,
    pub points: Vec<ForecastPoint>,
}

/// `GET /v1/servers/{id}/forecast`.
#[utoipa::path(get, path = "/v1/servers/{id}/forecast", params(("id" = String, Path)),
    responses((status = 200, body = ForecastResponse), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn forecast(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ForecastResponse>, ApiError> {
    let started = Instant::now();
    let core = &state.core;
    let input = {
        let engine = core.engine.lock().unwrap_or_else(|e| e.into_inner());
        ForecastInput::from_engine(&engine, &id, ForecastContext::default())
    };
    let cached = cached_forecast(core, &id).await;
    let usable = cached.filter(|c| match &input {
        Some(i) => c.first_bucket_ms > i.last_bucket_ms,
        None => true,
    });
    let (f, source) = match (usable, input) {
        (Some(c), _) => (c, Source::Cache),
        (None, Some(input)) => {
            let out = core.forecaster.forecast_all(vec![input]).await;
            let o = out
                .first()
                .ok_or_else(|| ApiError::unavailable("the forecaster returned nothing"))?;
            if let (Some(refill), Ok(json)) = (&core.refill, serde_json::to_vec(o)) {
                refill.offer(core.keys.entry(Tier::Forecast, &id, kind::FORECAST, json));
            }
            (CachedForecast::from(o), Source::Database)
        }
        (None, None) => {
            return Err(ApiError::not_found(format!(
                "no forecast for {id:?}: this replica holds no history of it and the cache has none"
            )))
        }
    };
    Ok(Json(ForecastResponse {
        service_id: id,
        metric_name: "total_events".into(),
        points: f
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| ForecastPoint {
                time: rfc3339(f.first_bucket_ms + i as i64 * f.step_ms),
                value: *v,
            })
            .collect(),
        model_version: f.model_version,
        routed_version: f.routed_version,
        fallback_reason: f.fallback_reason.map(|r| r.as_str().to_string()),
        source: if source == Source::Cache {
            "cache"
        } else {
            "computed"
        }
        .into(),
        step_secs: f.step_ms / 1000,
        response_time_ms: elapsed_ms(started),
    }))
}

// ----- /v1/servers/{id}/trend ---------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendQuery {
    /// Window compared with the one before it: `1h` (default), `30m`, `6h`, `1d`…
    pub window: Option<String>,
}

/// The figures of one window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct WindowStats {
    pub from: String,
    pub to: String,
    pub samples: i64,
    pub avg_response_time_ms: Option<f64>,
    pub p95_response_time_ms: Option<f64>,
    pub requests: f64,
    pub errors: f64,
    /// errors / requests (None without requests).
    pub error_rate: Option<f64>,
    pub avg_cpu: Option<f64>,
}

/// `GET /v1/servers/{id}/trend`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TrendResponse {
    pub service_id: String,
    /// `improving`, `stable` or `degrading`.
    pub trend: String,
    /// Which numbers decided it.
    pub reason: String,
    pub window_secs: i64,
    pub current: WindowStats,
    pub previous: WindowStats,
    /// Relative change of the average response time (current / previous − 1).
    pub response_time_change: Option<f64>,
    /// Change of the error rate in percentage points.
    pub error_rate_change_pp: Option<f64>,
    pub source: String,
    pub response_time_ms: f64,
}

/// Response time up more than this share, or the error rate up more than
/// [`ERROR_RATE_PP`] points: degrading (down as much: improving).
pub const RESPONSE_TIME_SHARE: f64 = 0.10;
pub const ERROR_RATE_PP: f64 = 1.0;

/// The verdict from two windows' figures.
pub fn judge(
    current: &WindowStats,
    previous: &WindowStats,
) -> (String, String, Option<f64>, Option<f64>) {
    if current.samples == 0 || previous.samples == 0 {
        return (
            "stable".into(),
            "not enough samples in one of the windows to compare".into(),
            None,
            None,
        );
    }
    let rt = match (current.avg_response_time_ms, previous.avg_response_time_ms) {
        (Some(c), Some(p)) if p > 0.0 => Some(c / p - 1.0),
        _ => None,
    };
    let er = match (current.error_rate, previous.error_rate) {
        (Some(c), Some(p)) => Some((c - p) * 100.0),
        _ => None,
    };
    let worse =
        rt.is_some_and(|r| r > RESPONSE_TIME_SHARE) || er.is_some_and(|e| e > ERROR_RATE_PP);
    let better =
        rt.is_some_and(|r| r < -RESPONSE_TIME_SHARE) || er.is_some_and(|e| e < -ERROR_RATE_PP);
    let describe = |rt: Option<f64>, er: Option<f64>| {
        let mut parts = Vec::new();
        if let Some(r) = rt {
            parts.push(format!("response time {:+.1} %", r * 100.0));
        }
        if let Some(e) = er {
            parts.push(format!("error rate {e:+.2} pp"));
        }
        if parts.is_empty() {
            "no response times or request counts to compare".to_string()
        } else {
            parts.join(", ")
        }
    };
    let trend = if worse {
        "degrading"
    } else if better {
        "improving"
    } else {
        "stable"
    };
    let reason = format!(
        "{} (thresholds: ±{:.0} % response time, ±{ERROR_RATE_PP} pp error rate)",
        describe(rt, er),
        RESPONSE_TIME_SHARE * 100.0
    );
    (trend.into(), reason, rt, er)
}

async fn query_windows(
    pool: &deadpool_postgres::Pool,
    id: &str,
    now_ms: i64,
    window_ms: i64,
) -> Result<Option<(WindowStats, WindowStats)>, ApiError> {
    let client = pool
        .get()
        .await
        .map_err(|e| ApiError::unavailable(format!("PostgreSQL unavailable: {e}")))?;
    let t = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let (a, b, c) = (t(now_ms - 2 * window_ms), t(now_ms - window_ms), t(now_ms));
    let rows = client
        .query(
            "SELECT ts >= $3 AS cur, count(*), avg(response_time_ms), \
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms), \
                    coalesce(sum(requests), 0), coalesce(sum(errors), 0), avg(cpu) \
             FROM samples WHERE service_id = $1 AND ts >= $2 AND ts < $4 GROUP BY cur",
            &[&id, &a, &b, &c],
        )
        .await
        .map_err(|e| ApiError::unavailable(format!("PostgreSQL query failed: {e}")))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let empty = |from: i64, to: i64| WindowStats {
        from: rfc3339(from),
        to: rfc3339(to),
        samples: 0,
        avg_response_time_ms: None,
        p95_response_time_ms: None,
        requests: 0.0,
        errors: 0.0,
        error_rate: None,
        avg_cpu: None,
    };
    let mut previous = empty(now_ms - 2 * window_ms, now_ms - window_ms);
    let mut current = empty(now_ms - window_ms, now_ms);
    for r in rows {
        let slot = if r.get::<_, bool>(0) {
            &mut current
        } else {
            &mut previous
        };
        let requests: f64 = r.get(4);
        let errors: f64 = r.get(5);
        slot.samples = r.get(1);
        slot.avg_response_time_ms = r.get(2);
        slot.p95_response_time_ms = r.get(3);
        slot.requests = requests;
        slot.errors = errors;
        slot.error_rate = (requests > 0.0).then(|| errors / requests);
        slot.avg_cpu = r.get(6);
    }
    Ok(Some((current, previous)))
}

/// `GET /v1/servers/{id}/trend?window=1h`: the last window against the one before it, from
/// `samples` (cache first, one minute granularity).
#[utoipa::path(get, path = "/v1/servers/{id}/trend", params(("id" = String, Path), TrendQuery),
    responses((status = 200, body = TrendResponse), (status = 400, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn trend(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<TrendQuery>,
) -> Result<Json<TrendResponse>, ApiError> {
    let started = Instant::now();
    let core = &state.core;
    let window = match &q.window {
        Some(w) => parse_duration_ms("window", w)?,
        None => 3_600_000,
    };
    if !(60_000..=7 * 86_400_000).contains(&window) {
        return Err(bad_query(
            "window",
            "`window` must be between 1m and 7d".into(),
        ));
    }
    // one minute granularity: the cache entry of this minute serves everyone
    let now = core.now_ms().div_euclid(60_000) * 60_000;
    let key = core
        .keys
        .key(Tier::Stats, &id, &format!("trend-{window}-{now}"));
    let pool = core.pool.clone();
    let (found, source) = core
        .read
        .get_json::<(WindowStats, WindowStats), _, _, ApiError>(&key, Tier::Stats, || async {
            match &pool {
                Some(pool) => query_windows(pool, &id, now, window).await,
                None => Err(ApiError::unavailable("no PostgreSQL configured")),
            }
        })
        .await?;
    let Some((current, previous)) = found else {
        return Err(ApiError::not_found(format!(
            "no samples of {id:?} in the last two windows of {}s",
            window / 1000
        )));
    };
    let (trend, reason, rt, er) = judge(&current, &previous);
    Ok(Json(TrendResponse {
        service_id: id,
        trend,
        reason,
        window_secs: window / 1000,
        current,
        previous,
        response_time_change: rt,
        error_rate_change_pp: er,
        source: source.as_str().into(),
        response_time_ms: elapsed_ms(started),
    }))
}
