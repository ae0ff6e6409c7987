//! The unit of data that travels through mcpwatch: one normalised sample of one service.
//!
//! Everything upstream (the Kafka decoders in `ingest`) produces [`Sample`]s; everything
//! downstream (the PostgreSQL sink in `store`, the rolling buckets in `features`, the
//! detectors in `anomaly`) consumes them. Units are fixed here once so no later stage has
//! to guess: timestamps are epoch milliseconds UTC, `cpu` and `memory` are fractions in
//! `0..=1`, latencies are milliseconds.

use std::fmt;

/// Health reported by an MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Healthy,
    Degraded,
    Down,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "healthy" | "up" | "ok" => Some(Status::Healthy),
            "degraded" | "warning" => Some(Status::Degraded),
            "down" | "unhealthy" | "error" => Some(Status::Down),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Down => "down",
        }
    }

    /// Stored as a small integer: 0 healthy, 1 degraded, 2 down.
    pub fn code(self) -> i16 {
        match self {
            Status::Healthy => 0,
            Status::Degraded => 1,
            Status::Down => 2,
        }
    }
}

/// Lifecycle event of a service instance (`add_events` / `remove_events` / `update_events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    Add,
    Remove,
    Update,
}

impl Lifecycle {
    pub fn parse(s: &str) -> Option<Lifecycle> {
        match s {
            "add" => Some(Lifecycle::Add),
            "remove" => Some(Lifecycle::Remove),
            "update" => Some(Lifecycle::Update),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Add => "add",
            Lifecycle::Remove => "remove",
            Lifecycle::Update => "update",
        }
    }

    /// Stored as a small integer: 1 add, 2 remove, 3 update.
    pub fn code(self) -> i16 {
        match self {
            Lifecycle::Add => 1,
            Lifecycle::Remove => 2,
            Lifecycle::Update => 3,
        }
    }
}

/// Which wire format a sample arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The MCP server JSON format (SPEC §1.1).
    Mcp,
    /// prometheus-kafka-adapter JSON (SPEC §1.2), mapped through the config.
    Prometheus,
}

impl Origin {
    pub fn code(self) -> i16 {
        match self {
            Origin::Mcp => 0,
            Origin::Prometheus => 1,
        }
    }
}

/// One normalised observation of one service at one instant.
///
/// Every measurement is optional: an MCP sample usually carries several, a Prometheus
/// sample exactly one. A sample's natural key is `(service_id, ts_ms, series)`; two
/// samples with the same key are the same observation delivered twice.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The service (MCP `server_id`, or the id a Prometheus mapping derives from labels).
    pub service_id: String,
    /// Observation time, epoch milliseconds UTC.
    pub ts_ms: i64,
    /// Which stream within the service this sample belongs to: a fingerprint of the
    /// instance (MCP) or of the metric name and labels (Prometheus). Part of the natural key.
    pub series: i64,
    pub origin: Origin,
    /// CPU utilisation as a fraction (0..=1).
    pub cpu: Option<f64>,
    /// Memory utilisation as a fraction (0..=1).
    pub memory: Option<f64>,
    pub response_time_ms: Option<f64>,
    /// Requests served since the previous sample of this series (a delta, not a counter).
    pub requests: Option<f64>,
    /// Errors since the previous sample of this series (a delta, not a counter).
    pub errors: Option<f64>,
    pub status: Option<Status>,
    pub event: Option<Lifecycle>,
    pub instance_id: Option<String>,
    pub host: Option<String>,
    pub platform: Option<String>,
}

impl Sample {
    /// A sample with only the key fields set; decoders fill in the rest.
    pub fn new(service_id: impl Into<String>, ts_ms: i64, origin: Origin) -> Sample {
        Sample {
            service_id: service_id.into(),
            ts_ms,
            series: 0,
            origin,
            cpu: None,
            memory: None,
            response_time_ms: None,
            requests: None,
            errors: None,
            status: None,
            event: None,
            instance_id: None,
            host: None,
            platform: None,
        }
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.service_id, self.ts_ms, self.series)
    }
}

/// A stable 64-bit fingerprint (FNV-1a) used for the `series` key. Stable across
/// processes and versions, unlike `std`'s hasher, because it is stored.
pub fn fingerprint(parts: &[&[u8]]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // separator so ["ab","c"] and ["a","bc"] differ
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_separates_parts() {
        assert_eq!(fingerprint(&[b"a"]), fingerprint(&[b"a"]));
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        // pinned: this value is stored in PostgreSQL, it must never change
        assert_eq!(fingerprint(&[]), 0xcbf2_9ce4_8422_2325_u64 as i64);
    }

    #[test]
    fn status_and_lifecycle_round_trip() {
        for s in [Status::Healthy, Status::Degraded, Status::Down] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for e in [Lifecycle::Add, Lifecycle::Remove, Lifecycle::Update] {
            assert_eq!(Lifecycle::parse(e.as_str()), Some(e));
        }
    }
}
