//! Settings of the HTTP server (`[http]`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Requests taking longer are answered with 503.
    pub request_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 10_000,
        }
    }
}

impl HttpConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "http.listen",
                format!("{:?} is not an ip:port address", self.listen),
                "use e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\"",
            ));
        }
        if !(1024..=64 << 20).contains(&self.max_body_bytes) {
            return Err(ConfigError::invalid(
                "http.max_body_bytes",
                format!("{} is outside 1024..=67108864", self.max_body_bytes),
                "use e.g. 65536",
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "http.request_timeout_ms",
                "is 0",
                "use e.g. 10000",
            ));
        }
        Ok(())
    }
}

/// Settings of the API's behaviour (`[api]`): authentication, rate limiting, the plan
/// pipeline and its audit trail. The body size limit and the request timeout are transport
/// settings and live in `[http]` (`max_body_bytes`, `request_timeout_ms`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Require `Authorization: Bearer <key>` on every route except `open_paths`. Keys are made
    /// with `mcpwatch apikey create`.
    pub auth: bool,
    /// Routes served without a key (exact paths).
    pub open_paths: Vec<String>,
    /// How often the key table is re-read from PostgreSQL. Verified keys are held in memory
    /// between reads, so a revocation (or a new key) takes effect within this bound plus one
    /// query.
    pub key_refresh_ms: u64,
    /// Requests per second each key may make on average (0: no limit). Over it: 429 with
    /// `Retry-After`.
    pub rate_limit_per_sec: f64,
    /// Requests a key may make in a burst above the average rate.
    pub rate_limit_burst: u32,
    /// `expected_users` at which a forecast is used as is: a plan for `n` users scales the
    /// service's forecast by `n / reference_users` (and by the time slot's factor).
    pub reference_users: u64,
    /// A cached forecast of a service this replica does not hold is used while its first
    /// bucket is at most this old; older, the plan is computed on demand.
    pub forecast_max_age_secs: u64,
    /// z-score above which a plan's forecast is flagged as anomalous against the service's
    /// history (the seed's `ANOMALY_Z`).
    pub anomaly_z: f64,
    /// Largest value any plan may carry (counts); fractions are kept within 0..1.
    pub policy_max_value: f64,
    /// Largest step between two consecutive plan values, as a share of the previous value (or
    /// of the series' median when that is larger).
    pub policy_max_jump: f64,
    /// Plan values above `Q3 + policy_iqr_k · IQR` of the plan are limited to it.
    pub policy_iqr_k: f64,
    /// Record every plan (who asked, context, result) in the `plans` table.
    pub audit: bool,
    /// Plans waiting to be written; when full, new records are dropped (and counted in
    /// `mcpwatch_plans_audit_dropped_total`) rather than slowing requests down.
    pub audit_queue: usize,
    /// Largest number of plans written in one statement.
    pub audit_batch: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            auth: true,
            open_paths: ["/healthz", "/readyz", "/metrics", "/openapi.json"]
                .map(String::from)
                .to_vec(),
            key_refresh_ms: 2000,
            rate_limit_per_sec: 100.0,
            rate_limit_burst: 200,
            reference_users: 1000,
            forecast_max_age_secs: 3600,
            anomaly_z: 3.0,
            policy_max_value: 1e9,
            policy_max_jump: 0.5,
            policy_iqr_k: 3.0,
            audit: true,
            audit_queue: 10_000,
            audit_batch: 500,
        }
    }
}

impl ApiConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for p in &self.open_paths {
            if !p.starts_with('/') {
                return Err(ConfigError::invalid(
                    "api.open_paths",
                    format!("{p:?} is not a path"),
                    "list paths such as \"/healthz\"",
                ));
            }
        }
        if !(100..=60_000).contains(&self.key_refresh_ms) {
            return Err(ConfigError::invalid(
                "api.key_refresh_ms",
                format!("{} is outside 100..=60000", self.key_refresh_ms),
                "use e.g. 2000 (revocations take effect within about that long)",
            ));
        }
        if !(self.rate_limit_per_sec.is_finite() && self.rate_limit_per_sec >= 0.0) {
            return Err(ConfigError::invalid(
                "api.rate_limit_per_sec",
                format!("{} is not a rate", self.rate_limit_per_sec),
                "use a number >= 0, e.g. 100 (0 disables the limit)",
            ));
        }
        if self.rate_limit_burst == 0 {
            return Err(ConfigError::invalid(
                "api.rate_limit_burst",
                "is 0",
                "use e.g. 200 (at least 1)",
            ));
        }
        if self.reference_users == 0 {
            return Err(ConfigError::invalid(
                "api.reference_users",
                "is 0",
                "use e.g. 1000 (the default expected_users)",
            ));
        }
        if self.forecast_max_age_secs == 0 {
            return Err(ConfigError::invalid(
                "api.forecast_max_age_secs",
                "is 0",
                "use e.g. 3600",
            ));
        }
        let positive = [
            ("api.anomaly_z", self.anomaly_z, "3.0"),
            ("api.policy_max_value", self.policy_max_value, "1e9"),
            ("api.policy_max_jump", self.policy_max_jump, "0.5"),
            ("api.policy_iqr_k", self.policy_iqr_k, "3.0"),
        ];
        for (key, v, eg) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{v} is not a positive number"),
                    format!("use e.g. {eg}"),
                ));
            }
        }
        if !(1..=1_000_000).contains(&self.audit_queue) {
            return Err(ConfigError::invalid(
                "api.audit_queue",
                format!("{} is outside 1..=1000000", self.audit_queue),
                "use e.g. 10000",
            ));
        }
        if !(1..=10_000).contains(&self.audit_batch) {
            return Err(ConfigError::invalid(
                "api.audit_batch",
                format!("{} is outside 1..=10000", self.audit_batch),
                "use e.g. 500",
            ));
        }
        Ok(())
    }

    /// The policy settings as the forecast policy takes them.
    pub fn policy(&self) -> crate::forecast::policy::PolicyConfig {
        crate::forecast::policy::PolicyConfig {
            max_value: self.policy_max_value,
            max_jump: self.policy_max_jump,
            iqr_k: self.policy_iqr_k,
        }
    }
}
