//! The layers every request passes, outermost first:
//! 1. **metrics**: counts and times every answer by route template and status class;
//! 2. **json errors**: any error answer without a JSON body (a framework 405, a timeout, a
//!    caught panic) is rewritten to the one `{"error": {...}}` shape;
//! 3. **panic guard** (tower-http `CatchPanic`): a panicking handler is a 500, not a dead
//!    connection — and is counted;
//! 4. **timeout** (tower-http): `http.request_timeout_ms`, then 503;
//! 5. **auth**: `Authorization: Bearer <key>` on every path but `api.open_paths`;
//! 6. **rate limit**: per key, 429 with `Retry-After`.
//!
//! The body size limit (`http.max_body_bytes`) is axum's `DefaultBodyLimit`; the `/plans`
//! handler turns its rejection into a JSON 413.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{Caller, Verdict};
use super::error::ApiError;
use super::metrics::{ReasonLabel, RouteLabel, RouteLabels};
use super::ratelimit::Decision;
use super::ApiState;

/// Layer 1: request counts and durations by route template.
pub async fn track(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |p| p.as_str())
        .to_string();
    let response = next.run(req).await;
    let status = match response.status().as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let m = &state.core.metrics;
    m.duration
        .get_or_create(&RouteLabel {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RouteLabels { route, status })
        .inc();
    response
}

/// Layer 2: error answers always carry the JSON error shape.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "this route does not take that method")
        }
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => (
            "timeout",
            "the request took longer than http.request_timeout_ms",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the body is larger than http.max_body_bytes",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send application/json"),
        StatusCode::INTERNAL_SERVER_ERROR => ("internal", "internal error; the daemon logged it"),
        s if s.is_client_error() => ("bad_request", "the request could not be understood"),
        _ => ("internal", "the request failed"),
    };
    let mut rewritten = ApiError::new(status, code, message).into_response();
    // keep headers such as Allow or Retry-After
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

/// The 500 a caught panic becomes (then given the JSON shape by layer 2).
pub fn panic_response(
    state: &ApiState,
) -> impl Fn(Box<dyn std::any::Any + Send>) -> Response + Clone {
    let metrics = state.core.metrics.clone();
    move |err| {
        metrics.panics.inc();
        let what = err
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| err.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(panic = %what, "a request handler panicked");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the daemon logged it",
        )
        .into_response()
    }
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Layers 5 and 6: the key, then its rate limit.
pub async fn authorize(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let core = &state.core;
    let path = req.uri().path();
    if core.config.open_paths.iter().any(|p| p == path) {
        return next.run(req).await;
    }
    let key_id = if core.config.auth {
        let fail = |reason: &'static str, e: ApiError| {
            core.metrics
                .auth_failures
                .get_or_create(&ReasonLabel { reason })
                .inc();
            let mut r = e.into_response();
            if r.status() == StatusCode::UNAUTHORIZED {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            r
        };
        let Some(token) = bearer(&req) else {
            return fail(
                "missing",
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "send Authorization: Bearer <key> (keys: mcpwatch apikey create)",
                ),
            );
        };
        match core.auth.verify(token) {
            Verdict::Valid(id) => Some(id),
            Verdict::Unknown => {
                return fail(
                    "unknown",
                    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown API key"),
                )
            }
            Verdict::Revoked => {
                return fail(
                    "revoked",
                    ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "this API key has been revoked",
                    ),
                )
            }
            Verdict::Unavailable => {
                return fail(
                    "unavailable",
                    ApiError::unavailable(
                        "API keys cannot be checked yet (PostgreSQL unreachable)",
                    ),
                )
            }
        }
    } else {
        None
    };
    if core.limiter.is_enabled() {
        let bucket = key_id
            .clone()
            .unwrap_or_else(|| std::sync::Arc::from("anonymous"));
        if let Decision::Limit { retry_after_secs } = core.limiter.check(&bucket) {
            core.metrics.rate_limited.inc();
            let mut r = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "over the limit of {} requests per second per key; retry after {retry_after_secs} s",
                    core.config.rate_limit_per_sec
                ),
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return r;
        }
    }
    req.extensions_mut().insert(Caller { key_id });
    next.run(req).await
}
