//! The API's own figures (`mcpwatch_http_…`, `mcpwatch_plans_…`, `mcpwatch_api_…`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route template (`/v1/servers/{id}/metrics`), or `other`.
    pub route: String,
    /// Status class: `2xx`, `4xx`, `5xx`.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlanLabels {
    pub flavor: &'static str,
    /// Where the forecast came from: `cache`, `computed`, `cold_start`.
    pub source: &'static str,
}

fn latency() -> Histogram {
    // 25 µs .. ~0.8 s
    Histogram::new(exponential_buckets(25e-6, 2.0, 16))
}

/// Handles updated on the request path; cheap to clone.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    pub requests: Family<RouteLabels, Counter>,
    pub duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub auth_failures: Family<ReasonLabel, Counter>,
    pub rate_limited: Counter,
    pub plans: Family<PlanLabels, Counter>,
    pub plan_anomalies: Counter,
    pub plan_anomalies_dropped: Counter,
    pub audit_written: Counter,
    pub audit_dropped: Counter,
    pub audit_failed: Counter,
    pub panics: Counter,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency),
            auth_failures: Family::default(),
            rate_limited: Counter::default(),
            plans: Family::default(),
            plan_anomalies: Counter::default(),
            plan_anomalies_dropped: Counter::default(),
            audit_written: Counter::default(),
            audit_dropped: Counter::default(),
            audit_failed: Counter::default(),
            panics: Counter::default(),
        }
    }
}

impl ApiMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "mcpwatch_http_requests",
            "HTTP requests answered, by route and status class",
            self.requests.clone(),
        );
        r.register_with_unit(
            "mcpwatch_http_request_duration",
            "Time to answer an HTTP request (middleware included), by route",
            Unit::Seconds,
            self.duration.clone(),
        );
        r.register(
            "mcpwatch_api_auth_failures",
            "Requests refused by authentication, by reason (missing, unknown, revoked, unavailable)",
            self.auth_failures.clone(),
        );
        r.register(
            "mcpwatch_api_rate_limited",
            "Requests answered 429 by the per-key rate limit",
            self.rate_limited.clone(),
        );
        r.register(
            "mcpwatch_plans",
            "Capacity plans answered, by recommended flavor and forecast source",
            self.plans.clone(),
        );
        r.register(
            "mcpwatch_plan_anomalies",
            "Plans whose forecast strayed more than api.anomaly_z from the service's history",
            self.plan_anomalies.clone(),
        );
        r.register(
            "mcpwatch_plan_anomalies_dropped",
            "Forecast anomalies not handed to the alerter (its queue was full or closed)",
            self.plan_anomalies_dropped.clone(),
        );
        r.register(
            "mcpwatch_plans_audit_written",
            "Plans recorded in the plans table",
            self.audit_written.clone(),
        );
        r.register(
            "mcpwatch_plans_audit_dropped",
            "Plans not recorded because the audit queue was full",
            self.audit_dropped.clone(),
        );
        r.register(
            "mcpwatch_plans_audit_failed",
            "Plans not recorded because PostgreSQL refused the batch",
            self.audit_failed.clone(),
        );
        r.register(
            "mcpwatch_http_panics",
            "Handlers that panicked (answered 500; the daemon goes on)",
            self.panics.clone(),
        );
    }
}
