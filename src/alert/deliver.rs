//! Delivery of one webhook body with retries: exponential back-off on 5xx and transport
//! errors, the server's own delay on 429 (Discord's `retry_after`, seconds, from the JSON body,
//! else the `Retry-After` or `X-RateLimit-Reset-After` header), no retry on other 4xx.
//!
//! The URL is a secret: it is only ever handed to reqwest, and every reqwest error is stripped
//! of it (`without_url`) before it can reach an error value or a log line.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::alert::secret::SecretUrl;
use crate::alert::AlertError;

/// How hard to try.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// First back-off; doubles per attempt.
    pub initial: Duration,
    /// Longest back-off.
    pub max: Duration,
    /// Longest wait a 429 may ask for (longer asks are cut to this).
    pub max_retry_after: Duration,
}

/// The back-off before attempt `attempt + 1` (`attempt` starts at 1).
pub fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    policy.initial.saturating_mul(factor).min(policy.max)
}

/// Seconds to wait that a 429 asks for: the JSON body's `retry_after`, else the headers.
pub fn retry_after(headers: &reqwest::header::HeaderMap, body: &[u8]) -> Option<Duration> {
    let from_body = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("retry_after").and_then(Value::as_f64));
    let from_header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let secs = from_body
        .or_else(|| from_header("retry-after"))
        .or_else(|| from_header("x-ratelimit-reset-after"))?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// What one delivery took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Requests sent.
    pub sent: u32,
    /// Of which answered 429.
    pub rate_limited: u32,
}

/// Posts `body` to `url` until it is accepted, the attempts run out, the server refuses it
/// for good, or `shutdown` is cancelled.
pub async fn deliver(
    client: &reqwest::Client,
    url: &SecretUrl,
    body: &Value,
    policy: &RetryPolicy,
    shutdown: &CancellationToken,
) -> (Result<(), AlertError>, Attempts) {
    let mut attempts = Attempts::default();
    let mut last = String::new();
    for attempt in 1..=policy.max_attempts.max(1) {
        attempts.sent += 1;
        let wait = match client.post(url.expose()).json(body).send().await {
            Ok(resp) if resp.status().is_success() => return (Ok(()), attempts),
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                let bytes = resp.bytes().await.unwrap_or_default();
                if status == StatusCode::TOO_MANY_REQUESTS {
                    attempts.rate_limited += 1;
                    last = format!("HTTP {status}");
                    retry_after(&headers, &bytes)
                        .map(|d| d.min(policy.max_retry_after))
                        .unwrap_or_else(|| backoff(policy, attempt))
                } else if status.is_server_error() {
                    last = format!("HTTP {status}");
                    backoff(policy, attempt)
                } else {
                    // 4xx: the message or the webhook is wrong; retrying cannot help
                    return (
                        Err(AlertError::Rejected {
                            status: status.as_u16(),
                        }),
                        attempts,
                    );
                }
            }
            Err(e) => {
                last = error_chain(&e.without_url());
                backoff(policy, attempt)
            }
        };
        if attempt == policy.max_attempts {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    (
        Err(AlertError::GaveUp {
            attempts: attempts.sent,
            last,
        }),
        attempts,
    )
}

/// A transport error and its causes on one line (the URL already stripped by the caller).
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
