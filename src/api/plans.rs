//! `POST /plans`: a capacity plan for a service (SPEC §7, the seed's `app/routes/plans.py`).
//!
//! The journey of one request:
//! 1. **context**: the JSON body is checked field by field (every problem is a 4xx naming the
//!    field) and the defaults are filled in (web, prod, normal, weight 1, 1000 users).
//! 2. **router**: `service_type`, `time_slot`, `runtime_env` → model version.
//! 3. **forecast**: the continuous loop's forecast of the service from the hot cache when it
//!    is of that version and fresh (made from the newest closed bucket; or, for a service this
//!    replica does not hold, at most `api.forecast_max_age_secs` old); else computed on demand
//!    from the feature engine; a service nobody has seen gets a cold start (the fleet's median
//!    service, or `curr_cpu`/`curr_mem` for those metrics), `model_version` says so.
//! 4. **hourly**: the forecast buckets become 24 hourly values (sums of counts, means of
//!    fractions); hours past the model's horizon come from the seasonal baseline and the
//!    version reads `<model>+baseline_seasonal_v1`.
//! 5. **context scaling**: × `expected_users / api.reference_users` × the time slot's factor
//!    ([`slot_factor`]).
//! 6. **policy** ([`crate::forecast::policy`]): weight, clamps, smoothing.
//! 7. **anomaly check**: the result (context scaling divided out) against the service's recent
//!    history; above `api.anomaly_z` it is counted, recorded with the plan and offered to the
//!    alerter without waiting.
//! 8. **flavor and cost** exactly as SPEC §7 ([`flavor`]), then the response, and the audit
//!    record off the request path.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::audit::PlanRecord;
use super::auth::Caller;
use super::core::ApiCore;
use super::error::ApiError;
use super::metrics::PlanLabels;
use super::ApiState;
use crate::cache::{kind, Tier};
use crate::forecast::policy::{self, ForecastAnomaly, Scale};
use crate::forecast::{
    baseline_forecast, FallbackReason, ForecastContext, ForecastInput, RuntimeEnv, ServiceType,
    TimeSlot, BASELINE_VERSION,
};

const HOUR_MS: i64 = 3_600_000;
/// Hourly points in every plan.
pub const PLAN_HOURS: usize = 24;
/// The seed's fixed instance range.
pub const MIN_INSTANCES: u32 = 1;
pub const MAX_INSTANCES: u32 = 3;
/// `model_version` of a plan for a service with no history: a flat profile at the fleet's
/// median service.
pub const COLD_START_FLEET: &str = "cold_start_fleet_median_v1";
/// `model_version` of a cold-start cpu/memory plan taken from `curr_cpu` / `curr_mem`.
pub const COLD_START_CONTEXT: &str = "cold_start_context_v1";

// ----- the contract (documentation types; parsing is done field by field below) --------

/// The request body of `POST /plans`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanRequest {
    /// The service to plan for (the `server_id` its metrics carry).
    #[schema(example = "github-mcp")]
    pub service_id: String,
    /// `total_events` (the forecast target), `cpu_usage` or `memory_usage` (fractions 0..1;
    /// `cpu` and `memory` are accepted too).
    #[schema(example = "total_events")]
    pub metric_name: String,
    pub context: PlanContext,
    /// Free-text requirements; stored with the plan.
    #[schema(example = "scale up for the evening peak")]
    pub requirements: Option<String>,
}

/// The deployment context (seed `MCPContext`); every field but `github_url` has a default.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanContext {
    /// http(s) URL of the service's repository.
    #[schema(example = "https://github.com/acme/github-mcp")]
    pub github_url: String,
    /// RFC 3339 time of the request (stored with the plan).
    pub timestamp: Option<String>,
    /// `web` (default), `api` or `db`.
    pub service_type: Option<String>,
    /// `prod` (default) or `dev`.
    pub runtime_env: Option<String>,
    /// `peak`, `normal` (default), `low` or `weekend`.
    pub time_slot: Option<String>,
    /// Multiplier applied by the policy, > 0 (default 1.0).
    pub weight: Option<f64>,
    /// Users to plan for, integer ≥ 0 (default 1000).
    pub expected_users: Option<u64>,
    pub region: Option<String>,
    /// Current CPU use, a fraction 0..1 or a percentage.
    pub curr_cpu: Option<f64>,
    /// Current memory use, a fraction 0..1 or a percentage.
    pub curr_mem: Option<f64>,
}

/// The response of `POST /plans`. Its shape is a contract with deployment pipelines.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PlanResponse {
    pub prediction: Prediction,
    /// `small`, `medium` or `large`.
    #[schema(example = "medium")]
    pub recommended_flavor: String,
    pub min_instances: u32,
    pub max_instances: u32,
    /// small 1.2, medium 2.8, large 5.5.
    pub expected_cost_per_day: f64,
    pub generated_at: String,
}

/// The forecast a plan rests on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Prediction {
    pub github_url: String,
    pub metric_name: String,
    /// Which model produced the values (a cold start or a fallback says so here).
    #[schema(example = "lstm_total_events_v2")]
    pub model_version: String,
    pub generated_at: String,
    /// 24 hourly values, each for the hour starting at `time`.
    pub predictions: Vec<PredictionPoint>,
}

/// One hourly value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PredictionPoint {
    pub time: String,
    pub value: f64,
}

// ----- rules ----------------------------------------------------------------------------

/// The instance sizes of SPEC §7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flavor {
    Small,
    Medium,
    Large,
}

impl Flavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Small => "small",
            Flavor::Medium => "medium",
            Flavor::Large => "large",
        }
    }

    /// Cost per day (SPEC §7).
    pub fn cost_per_day(self) -> f64 {
        match self {
            Flavor::Small => 1.2,
            Flavor::Medium => 2.8,
            Flavor::Large => 5.5,
        }
    }

    fn up(self) -> Flavor {
        match self {
            Flavor::Small => Flavor::Medium,
            _ => Flavor::Large,
        }
    }

    fn down(self) -> Flavor {
        match self {
            Flavor::Large => Flavor::Medium,
            _ => Flavor::Small,
        }
    }
}

/// SPEC §7: users ≤ 500 small, ≤ 5000 medium, else large; `peak` upgrades one step, `low`
/// downgrades one; a forecast max > 1000 or mean > 500 forces large.
pub fn flavor(expected_users: u64, slot: TimeSlot, max: f64, mean: f64) -> Flavor {
    let base = if expected_users <= 500 {
        Flavor::Small
    } else if expected_users <= 5000 {
        Flavor::Medium
    } else {
        Flavor::Large
    };
    let f = match slot {
        TimeSlot::Peak => base.up(),
        TimeSlot::Low => base.down(),
        TimeSlot::Normal | TimeSlot::Weekend => base,
    };
    if max > 1000.0 || mean > 500.0 {
        Flavor::Large
    } else {
        f
    }
}

/// How a time slot scales a forecast: peak 1.25, normal 1, low 0.6, weekend 0.8.
pub fn slot_factor(slot: TimeSlot) -> f64 {
    match slot {
        TimeSlot::Peak => 1.25,
        TimeSlot::Normal => 1.0,
        TimeSlot::Low => 0.6,
        TimeSlot::Weekend => 0.8,
    }
}

// ----- the validated request ------------------------------------------------------------

/// Which series a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    TotalEvents,
    Cpu,
    Memory,
}

impl Metric {
    pub const ACCEPTED: &'static str = "total_events, cpu_usage, memory_usage, cpu, memory";

    fn parse(s: &str) -> Option<Metric> {
        Some(match s {
            "total_events" => Metric::TotalEvents,
            "cpu_usage" | "cpu" => Metric::Cpu,
            "memory_usage" | "memory" => Metric::Memory,
            _ => return None,
        })
    }

    fn scale(self) -> Scale {
        match self {
            Metric::TotalEvents => Scale::Count,
            Metric::Cpu | Metric::Memory => Scale::Normalised,
        }
    }
}

/// A request that passed validation, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    pub service_id: String,
    pub metric_name: String,
    pub metric: Metric,
    pub github_url: String,
    pub timestamp: Option<String>,
    pub service_type: ServiceType,
    pub runtime_env: RuntimeEnv,
    pub time_slot: TimeSlot,
    pub weight: f64,
    pub expected_users: u64,
    pub region: Option<String>,
    /// Fractions 0..1 (a percentage is divided by 100).
    pub curr_cpu: Option<f64>,
    pub curr_mem: Option<f64>,
    pub requirements: Option<String>,
}

impl PlanInput {
    fn forecast_context(&self) -> ForecastContext {
        ForecastContext {
            service_type: self.service_type,
            time_slot: self.time_slot,
            runtime_env: self.runtime_env,
        }
    }

    /// The context as recorded with the plan (defaults filled in).
    fn context_json(&self) -> Value {
        serde_json::json!({
            "github_url": self.github_url,
            "timestamp": self.timestamp,
            "service_type": self.service_type.as_str(),
            "runtime_env": self.runtime_env.as_str(),
            "time_slot": self.time_slot.as_str(),
            "weight": self.weight,
            "expected_users": self.expected_users,
            "region": self.region,
            "curr_cpu": self.curr_cpu,
            "curr_mem": self.curr_mem,
        })
    }
}

/// A number as a message shows it: plain, or in scientific notation when huge.
fn short(x: f64) -> String {
    if x.abs() >= 1e6 {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
}

fn missing(field: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing_field",
        format!("`{field}` is required"),
    )
    .with_field(field)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A present, non-null field (null counts as absent, as in the seed's optional fields).
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn string<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    path: &str,
    max_chars: usize,
) -> Result<Option<&'a str>, ApiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => {
            if s.chars().any(char::is_control) {
                return Err(invalid(
                    path,
                    format!("`{path}` must not contain control characters"),
                ));
            }
            if s.chars().count() > max_chars {
                return Err(invalid(
                    path,
                    format!("`{path}` is longer than {max_chars} characters"),
                ));
            }
            Ok(Some(s))
        }
        Some(other) => Err(invalid(
            path,
            format!("`{path}` must be a string, got {}", type_name(other)),
        )),
    }
}

fn required_string<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    path: &str,
    max_chars: usize,
) -> Result<&'a str, ApiError> {
    match string(obj, name, path, max_chars)? {
        None => Err(missing(path)),
        Some(s) if s.trim().is_empty() => Err(invalid(path, format!("`{path}` is empty"))),
        Some(s) => Ok(s),
    }
}

fn number(obj: &Map<String, Value>, name: &str, path: &str) -> Result<Option<f64>, ApiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(invalid(path, format!("`{path}` is not a finite number"))),
        },
        Some(other) => Err(invalid(
            path,
            format!("`{path}` must be a number, got {}", type_name(other)),
        )),
    }
}

fn choice<T: Copy>(
    obj: &Map<String, Value>,
    name: &str,
    options: &[(&str, T)],
    default: T,
) -> Result<T, ApiError> {
    let path = format!("context.{name}");
    let Some(s) = string(obj, name, &path, 32)? else {
        return Ok(default);
    };
    options
        .iter()
        .find(|(k, _)| *k == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
            invalid(
                &path,
                format!("`{path}` must be one of {}, got {s:?}", names.join(", ")),
            )
        })
}

/// An `http(s)://host[:port][/…]` URL: a scheme, a host of letters, digits, `.`, `-`, `_`
/// (or a bracketed IPv6 address), an optional port, no whitespace.
pub fn is_http_url(s: &str) -> bool {
    let rest = if let Some(r) = s.strip_prefix("https://") {
        r
    } else if let Some(r) = s.strip_prefix("http://") {
        r
    } else {
        return false;
    };
    if s.len() > 2048 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p))
                if !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') =>
            {
                (h, p.strip_prefix(':'))
            }
            _ => return false,
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        && !host.starts_with(['.', '-'])
        && !host.ends_with('-');
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

/// Checks a body and fills in the defaults. Every problem names its field.
pub fn validate(body: &Value) -> Result<PlanInput, ApiError> {
    let Value::Object(top) = body else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("the body must be a JSON object, got {}", type_name(body)),
        ));
    };
    let service_id = required_string(top, "service_id", "service_id", 256)?;
    let metric_name = required_string(top, "metric_name", "metric_name", 128)?;
    let metric = Metric::parse(metric_name).ok_or_else(|| {
        invalid(
            "metric_name",
            format!(
                "`metric_name` must be one of {}, got {metric_name:?}",
                Metric::ACCEPTED
            ),
        )
    })?;
    let requirements = string(top, "requirements", "requirements", 4096)?.map(str::to_string);
    let ctx = match field(top, "context") {
        None => return Err(missing("context")),
        Some(Value::Object(c)) => c,
        Some(other) => {
            return Err(invalid(
                "context",
                format!("`context` must be an object, got {}", type_name(other)),
            ))
        }
    };
    let github_url = required_string(ctx, "github_url", "context.github_url", 2048)?;
    if !is_http_url(github_url) {
        return Err(invalid(
            "context.github_url",
            format!("`context.github_url` must be an http(s) URL such as https://github.com/owner/repo, got {github_url:?}"),
        ));
    }
    let timestamp = string(ctx, "timestamp", "context.timestamp", 64)?;
    if let Some(ts) = timestamp {
        if DateTime::parse_from_rfc3339(ts).is_err() {
            return Err(invalid(
                "context.timestamp",
                format!("`context.timestamp` must be an RFC 3339 time such as 2025-11-20T12:00:00Z, got {ts:?}"),
            ));
        }
    }
    let service_type = choice(
        ctx,
        "service_type",
        &[
            ("web", ServiceType::Web),
            ("api", ServiceType::Api),
            ("db", ServiceType::Db),
        ],
        ServiceType::Web,
    )?;
    let runtime_env = choice(
        ctx,
        "runtime_env",
        &[("prod", RuntimeEnv::Prod), ("dev", RuntimeEnv::Dev)],
        RuntimeEnv::Prod,
    )?;
    let time_slot = choice(
        ctx,
        "time_slot",
        &[
            ("peak", TimeSlot::Peak),
            ("normal", TimeSlot::Normal),
            ("low", TimeSlot::Low),
            ("weekend", TimeSlot::Weekend),
        ],
        TimeSlot::Normal,
    )?;
    let weight = match number(ctx, "weight", "context.weight")? {
        None => 1.0,
        Some(w) if w > 0.0 && w <= 1e6 => w,
        Some(w) => {
            return Err(invalid(
                "context.weight",
                format!(
                    "`context.weight` must be > 0 (and at most 1e6), got {}",
                    short(w)
                ),
            ))
        }
    };
    let expected_users = match field(ctx, "expected_users") {
        None => 1000,
        Some(Value::Number(n)) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) if u <= 1_000_000_000_000 => u,
            (None, Some(i), _) if i < 0 => {
                return Err(invalid(
                    "context.expected_users",
                    format!("`context.expected_users` must be >= 0, got {i}"),
                ))
            }
            (None, None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= 1e12 => f as u64,
            _ => {
                return Err(invalid(
                    "context.expected_users",
                    format!("`context.expected_users` must be an integer from 0 to 1e12, got {n}"),
                ))
            }
        },
        Some(other) => {
            return Err(invalid(
                "context.expected_users",
                format!(
                    "`context.expected_users` must be an integer, got {}",
                    type_name(other)
                ),
            ))
        }
    };
    let region = string(ctx, "region", "context.region", 64)?.map(str::to_string);
    let fraction = |name: &str| -> Result<Option<f64>, ApiError> {
        let path = format!("context.{name}");
        match number(ctx, name, &path)? {
            None => Ok(None),
            Some(x) if (0.0..=1.0).contains(&x) => Ok(Some(x)),
            Some(x) if (0.0..=100.0).contains(&x) => Ok(Some(x / 100.0)),
            Some(x) => Err(invalid(
                &path,
                format!("`{path}` must be a fraction 0..1 or a percentage 0..100, got {x}"),
            )),
        }
    };
    let curr_cpu = fraction("curr_cpu")?;
    let curr_mem = fraction("curr_mem")?;
    Ok(PlanInput {
        service_id: service_id.to_string(),
        metric_name: metric_name.to_string(),
        metric,
        github_url: github_url.to_string(),
        timestamp: timestamp.map(str::to_string),
        service_type,
        runtime_env,
        time_slot,
        weight,
        expected_users,
        region,
        curr_cpu,
        curr_mem,
        requirements,
    })
}

// ----- the forecast a plan rests on -----------------------------------------------------

/// A forecast as the continuous loop caches it (`ForecastOutput` JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CachedForecast {
    pub service_id: String,
    pub model_version: String,
    pub routed_version: String,
    #[serde(default)]
    pub fallback_reason: Option<FallbackReason>,
    pub first_bucket_ms: i64,
    pub step_ms: i64,
    pub values: Vec<f64>,
}

impl From<&crate::forecast::ForecastOutput> for CachedForecast {
    fn from(o: &crate::forecast::ForecastOutput) -> Self {
        CachedForecast {
            service_id: o.service_id.to_string(),
            model_version: o.model_version.clone(),
            routed_version: o.routed_version.clone(),
            fallback_reason: o.fallback_reason,
            first_bucket_ms: o.first_bucket_ms,
            step_ms: o.step_ms,
            values: o.values.clone(),
        }
    }
}

/// Where a plan's forecast came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForecastSource {
    Cache,
    Computed,
    ColdStart,
}

impl ForecastSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ForecastSource::Cache => "cache",
            ForecastSource::Computed => "computed",
            ForecastSource::ColdStart => "cold_start",
        }
    }
}

/// The forecast in buckets, with the history it is checked against (same units).
#[derive(Debug, Clone)]
pub struct Basis {
    pub values: Vec<f64>,
    pub first_ms: i64,
    pub step_ms: i64,
    pub model_version: String,
    pub source: ForecastSource,
    /// Recent values of the series, oldest first (empty when this replica has none).
    pub history: Vec<f64>,
}

/// The cached forecast of a service, if any (a cache error or a miss is `None`).
pub async fn cached_forecast(core: &ApiCore, service_id: &str) -> Option<CachedForecast> {
    core.cache.as_ref()?;
    let key = core.keys.key(Tier::Forecast, service_id, kind::FORECAST);
    let (found, _) = core
        .read
        .get_json::<CachedForecast, _, _, Infallible>(&key, Tier::Forecast, || async { Ok(None) })
        .await
        .unwrap_or((None, crate::cache::Source::None));
    found
}

/// The forecast of `total_events` for a service: cache, computed, or cold start.
pub async fn events_basis(core: &ApiCore, service_id: &str, ctx: ForecastContext) -> Basis {
    let route = core.router.route(&ctx).version.clone();
    // O(1) under the engine lock: the service's newest bucket and its (memoised) history
    let known = core.known(service_id, ctx);
    if let Some(c) = cached_forecast(core, service_id).await {
        let fresh = match &known {
            Some(k) => c.first_bucket_ms > k.last_bucket_ms,
            None => {
                core.now_ms() - c.first_bucket_ms <= core.config.forecast_max_age_secs as i64 * 1000
            }
        };
        if fresh && c.routed_version == route && !c.values.is_empty() && c.step_ms > 0 {
            return Basis {
                values: c.values,
                first_ms: c.first_bucket_ms,
                step_ms: c.step_ms,
                model_version: c.model_version,
                source: ForecastSource::Cache,
                history: known.map(|k| k.history.to_vec()).unwrap_or_default(),
            };
        }
    }
    let input = if known.is_some() {
        let engine = core.engine.lock().unwrap_or_else(|e| e.into_inner());
        ForecastInput::from_engine(&engine, service_id, ctx)
    } else {
        None
    };
    if let Some(input) = input {
        let history = input.history.clone();
        let out = core.forecaster.forecast_all(vec![input]).await;
        if let Some(o) = out.into_iter().next() {
            if route == core.default_route {
                if let (Some(refill), Ok(json)) = (&core.refill, serde_json::to_vec(&o)) {
                    refill.offer(
                        core.keys
                            .entry(Tier::Forecast, service_id, kind::FORECAST, json),
                    );
                }
            }
            return Basis {
                values: o.values,
                first_ms: o.first_bucket_ms,
                step_ms: o.step_ms,
                model_version: o.model_version,
                source: ForecastSource::Computed,
                history,
            };
        }
    }
    let prior = core.fleet_prior();
    cold_start(core, prior.events, COLD_START_FLEET)
}

fn cold_start(core: &ApiCore, level: f64, version: &str) -> Basis {
    let now = core.now_ms();
    let step = core.bucket_width_ms;
    let n = (PLAN_HOURS as i64 * HOUR_MS).div_euclid(step).max(1) as usize + 1;
    Basis {
        values: vec![level.max(0.0); n],
        first_ms: now.div_euclid(step) * step,
        step_ms: step,
        model_version: version.to_string(),
        source: ForecastSource::ColdStart,
        history: Vec::new(),
    }
}

/// The forecast of a fraction (cpu or memory): the seasonal baseline on the service's
/// window, or a cold start.
fn fraction_basis(core: &ApiCore, input: &PlanInput) -> Basis {
    let column = match input.metric {
        Metric::Memory => crate::features::names::F_AVG_MEMORY,
        _ => crate::features::names::F_AVG_CPU,
    };
    let found = {
        let engine = core.engine.lock().unwrap_or_else(|e| e.into_inner());
        engine.state(&input.service_id).and_then(|s| {
            let start = s.last_bucket_start_ms()?;
            let history: Vec<f64> = s.window().iter().map(|row| row[column]).collect();
            Some((start, history))
        })
    };
    match found {
        Some((last, history)) if !history.is_empty() => {
            let step = core.bucket_width_ms;
            let n = (PLAN_HOURS as i64 * HOUR_MS).div_euclid(step).max(1) as usize + 1;
            Basis {
                values: baseline_forecast(&history, core.season, n),
                first_ms: last + step,
                step_ms: step,
                model_version: BASELINE_VERSION.to_string(),
                source: ForecastSource::Computed,
                history,
            }
        }
        _ => {
            let given = match input.metric {
                Metric::Memory => input.curr_mem,
                _ => input.curr_cpu,
            };
            match given {
                Some(v) => cold_start(core, v, COLD_START_CONTEXT),
                None => {
                    let p = core.fleet_prior();
                    let level = if input.metric == Metric::Memory {
                        p.memory
                    } else {
                        p.cpu
                    };
                    cold_start(core, level, COLD_START_FLEET)
                }
            }
        }
    }
}

/// 24 hourly values from a bucketed forecast starting at `first_ms`: a count is summed over
/// the buckets an hour overlaps (pro rata), a fraction is averaged. Buckets past the end of
/// `values` are taken from `extension`; returns whether any were.
pub fn hourly(
    values: &[f64],
    extension: &dyn Fn(usize) -> f64,
    step_ms: i64,
    scale: Scale,
) -> (Vec<f64>, bool) {
    let step = step_ms.max(1);
    let mut extended = false;
    let mut value = |b: usize| -> f64 {
        if let Some(v) = values.get(b) {
            *v
        } else {
            extended = true;
            extension(b)
        }
    };
    let mut out = Vec::with_capacity(PLAN_HOURS);
    for h in 0..PLAN_HOURS as i64 {
        let (start, end) = (h * HOUR_MS, (h + 1) * HOUR_MS);
        let mut acc = 0.0;
        let mut b = start.div_euclid(step);
        while b * step < end {
            let (bs, be) = (b * step, (b + 1) * step);
            let overlap = (end.min(be) - start.max(bs)) as f64;
            if overlap > 0.0 {
                let v = value(b as usize);
                acc += match scale {
                    Scale::Count => v * overlap / step as f64,
                    Scale::Normalised => v * overlap / HOUR_MS as f64,
                };
            }
            b += 1;
        }
        out.push(acc);
    }
    (out, extended)
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Everything a plan decided, before serialisation.
pub struct Plan {
    pub response: PlanResponse,
    pub flavor: Flavor,
    pub source: ForecastSource,
    pub anomaly: Option<ForecastAnomaly>,
}

/// Runs the whole pipeline for a validated request.
pub async fn make_plan(core: &ApiCore, input: &PlanInput, key_id: Option<&str>) -> Plan {
    let basis = match input.metric {
        Metric::TotalEvents => {
            events_basis(core, &input.service_id, input.forecast_context()).await
        }
        Metric::Cpu | Metric::Memory => fraction_basis(core, input),
    };
    let scale = input.metric.scale();
    let needed =
        (PLAN_HOURS as u64 * HOUR_MS as u64).div_ceil(basis.step_ms.max(1) as u64) as usize;
    let extension: Vec<f64> = if basis.values.len() >= needed {
        Vec::new()
    } else if basis.history.is_empty() {
        let mean = basis.values.iter().sum::<f64>() / basis.values.len().max(1) as f64;
        vec![mean; needed]
    } else {
        let season = (86_400_000 / basis.step_ms.max(1)).max(1) as usize;
        baseline_forecast(&basis.history, season, needed)
    };
    let (raw, extended) = hourly(
        &basis.values,
        &|b| extension.get(b).copied().unwrap_or(0.0),
        basis.step_ms,
        scale,
    );
    let factor = input.expected_users as f64 / core.config.reference_users.max(1) as f64
        * slot_factor(input.time_slot);
    let scaled: Vec<f64> = raw.iter().map(|v| v * factor).collect();
    let out = policy::apply(&scaled, input.weight, scale, &core.policy);
    let values = out.values;
    let model_version = if extended {
        format!("{}+{BASELINE_VERSION}", basis.model_version)
    } else {
        basis.model_version.clone()
    };
    // the anomaly check, in the service's own units per hour
    let anomaly = {
        let divisor = factor * input.weight;
        let per_hour = match scale {
            Scale::Count => HOUR_MS as f64 / basis.step_ms.max(1) as f64,
            Scale::Normalised => 1.0,
        };
        let history: Vec<f64> = basis.history.iter().map(|v| v * per_hour).collect();
        let own: Vec<f64> = values.iter().map(|v| v / divisor).collect();
        (divisor > 0.0)
            .then(|| policy::forecast_zscore(&history, &own))
            .flatten()
            .filter(|z| z.z > core.config.anomaly_z)
            .map(|z| ForecastAnomaly {
                service_id: input.service_id.clone(),
                metric_name: input.metric_name.clone(),
                model_version: model_version.clone(),
                key_id: key_id.map(str::to_string),
                z_score: z.z,
                threshold: core.config.anomaly_z,
                value: own[z.at],
                value_at_ms: basis.first_ms + z.at as i64 * HOUR_MS,
                history_mean: z.history_mean,
                history_std: z.history_std,
                history_points: z.history_points,
                detected_at_ms: core.now_ms(),
            })
    };
    let max = values.iter().copied().fold(0.0, f64::max);
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let flavor = flavor(input.expected_users, input.time_slot, max, mean);
    let generated_at = rfc3339(core.now_ms());
    let predictions = values
        .iter()
        .enumerate()
        .map(|(h, v)| PredictionPoint {
            time: rfc3339(basis.first_ms + h as i64 * HOUR_MS),
            value: *v,
        })
        .collect();
    Plan {
        response: PlanResponse {
            prediction: Prediction {
                github_url: input.github_url.clone(),
                metric_name: input.metric_name.clone(),
                model_version,
                generated_at: generated_at.clone(),
                predictions,
            },
            recommended_flavor: flavor.as_str().to_string(),
            min_instances: MIN_INSTANCES,
            max_instances: MAX_INSTANCES,
            expected_cost_per_day: flavor.cost_per_day(),
            generated_at,
        },
        flavor,
        source: basis.source,
        anomaly,
    }
}

/// Parses the body: JSON only, within the size limit.
pub fn parse_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !(essence == "application/json" || essence.ends_with("+json")) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("send the body as application/json, not {essence:?}"),
            ));
        }
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is larger than http.max_body_bytes",
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("could not read the body: {e}"),
            )
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// `POST /plans`.
#[utoipa::path(
    post,
    path = "/plans",
    request_body = PlanRequest,
    responses(
        (status = 200, description = "A capacity plan", body = PlanResponse),
        (status = 400, description = "The body is not JSON", body = super::error::ErrorBody),
        (status = 401, description = "No key, or an unknown key", body = super::error::ErrorBody),
        (status = 403, description = "A revoked key", body = super::error::ErrorBody),
        (status = 413, description = "The body is larger than http.max_body_bytes", body = super::error::ErrorBody),
        (status = 415, description = "Not application/json", body = super::error::ErrorBody),
        (status = 422, description = "A field is missing or invalid (`field` names it)", body = super::error::ErrorBody),
        (status = 429, description = "Over the key's rate limit (see Retry-After)", body = super::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn plans(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let value = match parse_body(&headers, body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let input = match validate(&value) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let core = &state.core;
    let key_id = caller.and_then(|Extension(c)| c.key_id);
    let plan = make_plan(core, &input, key_id.as_deref()).await;
    let body = match serde_json::to_vec(&plan.response) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("could not encode the plan: {e}"),
            )
            .into_response()
        }
    };
    core.metrics
        .plans
        .get_or_create(&PlanLabels {
            flavor: plan.flavor.as_str(),
            source: plan.source.as_str(),
        })
        .inc();
    let anomaly_json = plan
        .anomaly
        .as_ref()
        .and_then(|a| serde_json::to_string(a).ok());
    if let Some(a) = plan.anomaly {
        core.metrics.plan_anomalies.inc();
        let sent = core
            .anomalies
            .as_ref()
            .is_some_and(|tx| tx.try_send(a).is_ok());
        if !sent && core.anomalies.is_some() {
            core.metrics.plan_anomalies_dropped.inc();
        }
    }
    if let Some(audit) = &core.audit {
        audit.record(PlanRecord {
            ts_ms: core.now_ms(),
            key_id,
            service_id: input.service_id.clone(),
            metric_name: input.metric_name.clone(),
            github_url: input.github_url.clone(),
            context: input.context_json().to_string(),
            requirements: input.requirements.clone(),
            model_version: plan.response.prediction.model_version.clone(),
            forecast_source: plan.source.as_str(),
            flavor: plan.flavor.as_str(),
            cost_per_day: plan.response.expected_cost_per_day,
            anomaly: anomaly_json,
            response: body.clone(),
        });
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
