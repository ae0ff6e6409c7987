//! `GET /v1/stats`: the daemon's realtime figures in one answer, with an overall health
//! score, recommendations and urgent actions (the seed's `getRealtimeStats()`).
//!
//! The health score is a weighted mean of components, each scored 0..1, × 100:
//!
//! | component | weight | 1 when | 0 when |
//! |---|---|---|---|
//! | `postgres` or `store` (readiness check: the durable store) | 25 | reachable | unreachable |
//! | `kafka` (readiness check) | 20 | connected | not |
//! | `cache` (readiness check) | 10 | ready or disabled | degraded |
//! | `cache_hit_rate` | 15 | ≥ 75 % (the seed's target) or no reads yet | 0 % (linear) |
//! | `consumer_lag` | 15 | ≤ 1,000 messages | ≥ 100,000 (log-linear) |
//! | `cache_memory` | 5 | ≤ 80 % of the budget | ≥ 100 % (linear) |
//! | `services` | 10 | every service healthy (or without status) | every one down |
//!
//! Other readiness checks count with weight 10. The answer lists every component with its
//! weight, value and points, so the score can be recomputed by hand.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use crate::telemetry::render;

/// One part of the health score.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct HealthComponent {
    pub name: String,
    pub weight: f64,
    /// 0..1.
    pub value: f64,
    /// `weight × value`.
    pub points: f64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Health {
    /// 0..100.
    pub score: u32,
    /// How the score is computed.
    pub method: String,
    pub components: Vec<HealthComponent>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CacheStats {
    pub backend: String,
    /// Share of read-through reads the cache served (0..1) since start.
    pub hit_rate: f64,
    pub reads_cache: u64,
    pub reads_database: u64,
    pub used_memory_bytes: Option<u64>,
    pub memory_budget_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct IngestStats {
    /// Samples decoded per second over the last minute (or since start).
    pub samples_per_sec: f64,
    pub samples_total: u64,
    pub consumer_lag: f64,
    pub dead_letters: u64,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct StatsResponse {
    pub generated_at: String,
    pub uptime_secs: f64,
    pub active_servers: usize,
    /// Services by status (`healthy`, `degraded`, `down`, `stale`, `unknown`).
    pub servers_by_status: BTreeMap<String, usize>,
    pub cache: CacheStats,
    pub ingest: IngestStats,
    pub health: Health,
    pub recommendations: Vec<String>,
    pub urgent_actions: Vec<String>,
}

/// Sum of every sample of a metric family in an exposition text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn component(name: &str, weight: f64, value: f64, detail: String) -> HealthComponent {
    let value = value.clamp(0.0, 1.0);
    HealthComponent {
        name: name.into(),
        weight,
        value: (value * 1000.0).round() / 1000.0,
        points: (weight * value * 100.0).round() / 100.0,
        detail,
    }
}

/// Lag score: 1 at ≤ 1,000 messages, 0 at ≥ 100,000, log-linear between.
pub fn lag_score(lag: f64) -> f64 {
    if lag <= 1000.0 {
        1.0
    } else if lag >= 100_000.0 {
        0.0
    } else {
        1.0 - (lag.log10() - 3.0) / 2.0
    }
}

/// `GET /v1/stats`.
#[utoipa::path(get, path = "/v1/stats", responses((status = 200, body = StatsResponse)),
    security(("bearer" = [])))]
pub async fn stats(State(state): State<ApiState>) -> Json<StatsResponse> {
    let core = &state.core;
    let now = core.now_ms();
    // readiness probes, concurrently
    let checks =
        futures::future::join_all(state.readiness.checks.iter().map(|c| (c.probe)())).await;
    let (active, servers) = super::query::server_list(&state, 10_000).await;
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for s in &servers {
        *by_status.entry(s.status.clone()).or_default() += 1;
    }
    // cache
    let cm = &core.cache_metrics;
    let reads_cache = cm.reads_served(crate::cache::Source::Cache);
    let reads_db = cm.reads_served(crate::cache::Source::Database)
        + cm.reads_served(crate::cache::Source::None);
    let hit_rate = if reads_cache + reads_db == 0 {
        0.0
    } else {
        reads_cache as f64 / (reads_cache + reads_db) as f64
    };
    let budget = cm.memory_budget.get();
    let used = cm.memory_used.get();
    let cache = CacheStats {
        backend: core
            .cache
            .as_ref()
            .map_or("none".to_string(), |c| c.backend().as_str().to_string()),
        hit_rate,
        reads_cache,
        reads_database: reads_db,
        used_memory_bytes: (core.cache.is_some() && used > 0).then_some(used as u64),
        memory_budget_bytes: (budget > 0).then_some(budget as u64),
    };
    // ingest
    let text = render(&state.registry);
    let lag = metric_sum(&text, "mcpwatch_consumer_lag");
    let (samples_total, dead_letters) = core
        .ingest
        .as_ref()
        .map_or((0, 0), |m| (m.samples_decoded.get(), m.dead_letters.get()));
    let samples_per_sec = {
        let mut readings = core
            .ingest_readings
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        readings.push_back((now, samples_total));
        while readings.len() > 2 && readings.front().is_some_and(|(t, _)| now - t > 60_000) {
            readings.pop_front();
        }
        let (t0, n0) = if readings.len() >= 2 {
            readings[0]
        } else {
            (core.started_ms, 0)
        };
        let dt = (now - t0) as f64 / 1000.0;
        if dt > 0.0 {
            samples_total.saturating_sub(n0) as f64 / dt
        } else {
            0.0
        }
    };
    // health
    let mut components = Vec::new();
    let mut recommendations = Vec::new();
    let mut urgent = Vec::new();
    for (check, ok) in state.readiness.checks.iter().zip(&checks) {
        let weight = match check.name {
            // the durable store, PostgreSQL or the embedded one
            "postgres" | "store" => 25.0,
            "kafka" => 20.0,
            "cache" => 10.0,
            _ => 10.0,
        };
        components.push(component(
            check.name,
            weight,
            if *ok { 1.0 } else { 0.0 },
            if *ok { "ok".into() } else { "down".into() },
        ));
        if !ok {
            match check.name {
                "postgres" => urgent.push(
                    "PostgreSQL is unreachable: samples are not being stored and offsets are not committed; check store.url and the database".to_string(),
                ),
                "kafka" => urgent.push(
                    "Kafka is unreachable: nothing is being consumed; check kafka.brokers".to_string(),
                ),
                "cache" => recommendations.push(
                    "The hot cache is degraded: reads go to PostgreSQL; check cache.url (Redis)".to_string(),
                ),
                other => urgent.push(format!("dependency `{other}` is down")),
            }
        }
    }
    let reads = reads_cache + reads_db;
    let hit_value = if reads == 0 { 1.0 } else { hit_rate / 0.75 };
    components.push(component(
        "cache_hit_rate",
        15.0,
        hit_value,
        if reads == 0 {
            "no cache reads yet".into()
        } else {
            format!("{:.1} % of {reads} reads (target 75 %)", hit_rate * 100.0)
        },
    ));
    if reads >= 100 && hit_rate < 0.75 {
        recommendations.push(format!(
            "Cache hit rate {:.1} % is below the 75 % target: lengthen the recent/stats TTLs (cache.ttl) or raise cache.memory_budget_bytes",
            hit_rate * 100.0
        ));
    }
    components.push(component(
        "consumer_lag",
        15.0,
        lag_score(lag),
        format!("{lag:.0} messages behind"),
    ));
    if lag > 10_000.0 {
        recommendations.push(format!(
            "Consumer lag is {lag:.0} messages: add replicas to the consumer group or raise ingest.writers"
        ));
    }
    if budget > 0 && core.cache.is_some() {
        let share = used as f64 / budget as f64;
        components.push(component(
            "cache_memory",
            5.0,
            1.0 - (share - 0.8) / 0.2,
            format!("{:.1} of {:.1} MB", used as f64 / 1e6, budget as f64 / 1e6),
        ));
        if share > 0.9 {
            urgent.push(format!(
                "Cache memory at {:.0} % of its budget: the coldest tiers are being evicted; raise cache.memory_budget_bytes or shorten TTLs",
                share * 100.0
            ));
        } else if share > 0.8 {
            recommendations.push(format!(
                "Cache memory at {:.0} % of its budget (warning level)",
                share * 100.0
            ));
        }
    }
    let counted = servers.len();
    if counted > 0 {
        let down = by_status.get("down").copied().unwrap_or(0);
        let degraded = by_status.get("degraded").copied().unwrap_or(0);
        let stale = by_status.get("stale").copied().unwrap_or(0);
        let value =
            1.0 - (down as f64 + 0.5 * degraded as f64 + 0.5 * stale as f64) / counted as f64;
        components.push(component(
            "services",
            10.0,
            value,
            format!("{down} down, {degraded} degraded, {stale} stale of {counted}"),
        ));
        if down > 0 {
            let names: Vec<&str> = servers
                .iter()
                .filter(|s| s.status == "down")
                .take(5)
                .map(|s| s.id.as_str())
                .collect();
            urgent.push(format!(
                "{down} service(s) report status down: {}",
                names.join(", ")
            ));
        }
        if stale > 0 {
            recommendations.push(format!(
                "{stale} service(s) sent nothing for 5 minutes: check their producers"
            ));
        }
    }
    let total_weight: f64 = components.iter().map(|c| c.weight).sum();
    let points: f64 = components.iter().map(|c| c.weight * c.value).sum();
    let score = if total_weight > 0.0 {
        (points / total_weight * 100.0).round().clamp(0.0, 100.0) as u32
    } else {
        100
    };
    if recommendations.is_empty() && urgent.is_empty() {
        recommendations.push("Every indicator meets its target.".to_string());
    }
    Json(StatsResponse {
        generated_at: chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        uptime_secs: ((now - core.started_ms) as f64 / 1000.0).max(0.0),
        active_servers: active,
        servers_by_status: by_status,
        cache,
        ingest: IngestStats {
            samples_per_sec: (samples_per_sec * 100.0).round() / 100.0,
            samples_total,
            consumer_lag: lag,
            dead_letters,
        },
        health: Health {
            score,
            method: "weighted mean of the components (each 0..1) × 100; weights: postgres (or the embedded store) 25, kafka 20, cache 10, cache_hit_rate 15, consumer_lag 15, cache_memory 5, services 10 (components that do not apply are left out)".into(),
            components,
        },
        recommendations,
        urgent_actions: urgent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_labelled_samples_only_of_that_family() {
        let text = "# TYPE mcpwatch_consumer_lag gauge\n\
                    mcpwatch_consumer_lag{topic=\"a\",partition=\"0\"} 5\n\
                    mcpwatch_consumer_lag{topic=\"a\",partition=\"1\"} 7\n\
                    mcpwatch_consumer_lag_other 100\n";
        assert_eq!(metric_sum(text, "mcpwatch_consumer_lag"), 12.0);
    }

    #[test]
    fn lag_score_is_log_linear() {
        assert_eq!(lag_score(0.0), 1.0);
        assert_eq!(lag_score(1000.0), 1.0);
        assert!((lag_score(10_000.0) - 0.5).abs() < 1e-9);
        assert_eq!(lag_score(1e6), 0.0);
    }
}
