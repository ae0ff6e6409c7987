//! A generator of realistic MCP-server traffic, as Kafka messages.
//!
//! Used by the load tests, the integration tests and the embedded demo. Services are named
//! after the MCP servers of the seeds (filesystem, github, supabase, memory, playwright, …);
//! load follows a daily and weekly cycle with noise, bursts and injected incidents. The mix
//! of wire formats and the share of malformed messages are configurable, and the generator
//! keeps exact per-service tallies of the valid samples it produced, so a run can be checked
//! for loss and duplicates.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// MCP server kinds the service names are drawn from.
pub const SERVER_KINDS: &[&str] = &[
    "filesystem",
    "github",
    "supabase",
    "memory",
    "playwright",
    "slack",
    "postgres",
    "brave-search",
    "fetch",
    "puppeteer",
    "sqlite",
    "git",
];

/// Constructor arguments for [`Traffic`].
#[derive(Debug, Clone)]
pub struct TrafficArgs {
    pub services: usize,
    /// Total samples to produce (valid and malformed).
    pub samples: usize,
    /// Share of samples sent malformed (they must end in the dead-letter topic).
    pub malformed_ratio: f64,
    /// Share of samples sent in the prometheus-kafka-adapter format.
    pub prometheus_ratio: f64,
    /// Timestamp of the first round.
    pub start_ms: i64,
    /// Time between a service's consecutive samples.
    pub step_ms: i64,
    /// Multiplies every server's request rate (1: the benches' levels, hundreds to tens of
    /// thousands of requests per 30 minutes). The demo scales traffic down to the range the
    /// shipped model was trained on (the seed cluster's ~10–100 events per 30 minutes).
    pub request_scale: f64,
    pub seed: u64,
}

impl Default for TrafficArgs {
    fn default() -> Self {
        TrafficArgs {
            services: 500,
            samples: 100_000,
            malformed_ratio: 0.01,
            prometheus_ratio: 0.3,
            start_ms: 0,
            step_ms: 10_000,
            request_scale: 1.0,
            seed: 7,
        }
    }
}

/// One Kafka message.
#[derive(Debug, Clone)]
pub struct GeneratedMessage {
    /// The service id (producers key by service so a service stays on one partition).
    pub key: String,
    pub payload: Vec<u8>,
}

/// Exact counts of what was generated.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Valid samples per service (what must land in PostgreSQL).
    pub valid: BTreeMap<String, u64>,
    /// Malformed samples (what must land in the dead-letter topic).
    pub malformed: u64,
    pub messages: u64,
}

impl Tally {
    pub fn valid_total(&self) -> u64 {
        self.valid.values().sum()
    }
}

/// The per-service state of the simulation.
struct Service {
    name: String,
    /// Base request rate per step.
    base: f64,
    instances: u32,
    platform: &'static str,
    /// Round number (steps since start) of the next sample.
    round: u64,
    /// Remaining rounds of an injected incident.
    incident: u32,
    /// Prometheus counters are cumulative.
    requests_total: f64,
    errors_total: f64,
}

/// Iterates over generated messages; [`Traffic::tally`] holds the counts so far.
pub struct Traffic {
    args: TrafficArgs,
    rng: StdRng,
    services: Vec<Service>,
    produced: usize,
    next_service: usize,
    pub tally: Tally,
}

impl Traffic {
    pub fn new(args: TrafficArgs) -> Traffic {
        let mut rng = StdRng::seed_from_u64(args.seed);
        let services = (0..args.services.max(1))
            .map(|i| Service {
                name: format!(
                    "{}-{:03}",
                    SERVER_KINDS[i % SERVER_KINDS.len()],
                    i / SERVER_KINDS.len()
                ),
                base: rng.random_range(5.0..200.0),
                instances: rng.random_range(1..=4),
                platform: ["linux", "darwin", "windows"][rng.random_range(0..3)],
                round: 0,
                incident: 0,
                requests_total: 0.0,
                errors_total: 0.0,
            })
            .collect();
        Traffic {
            args,
            rng,
            services,
            produced: 0,
            next_service: 0,
            tally: Tally::default(),
        }
    }

    /// Load multiplier at `ts_ms`: a daily cycle peaking mid-afternoon UTC, quieter weekends.
    pub fn seasonality(ts_ms: i64) -> f64 {
        let hours = ts_ms as f64 / 3_600_000.0;
        let day = (hours / 24.0).floor() as i64;
        let weekday = (day + 3).rem_euclid(7); // 1970-01-01 was a Thursday
        let daily = 1.0 + 0.6 * (2.0 * PI * (hours.rem_euclid(24.0) - 9.0) / 24.0).sin();
        let weekly = if weekday >= 5 { 0.55 } else { 1.0 };
        daily * weekly
    }

    fn next_message(&mut self) -> GeneratedMessage {
        let i = self.next_service;
        self.next_service = (self.next_service + 1) % self.services.len();
        let malformed = self
            .rng
            .random_bool(self.args.malformed_ratio.clamp(0.0, 1.0));
        let prometheus = self
            .rng
            .random_bool(self.args.prometheus_ratio.clamp(0.0, 1.0));
        let args = &self.args;
        let s = &mut self.services[i];
        let ts = args.start_ms + s.round as i64 * args.step_ms;
        s.round += 1;
        if s.incident == 0 && self.rng.random_bool(0.0005) {
            s.incident = self.rng.random_range(5..30);
        }
        let incident = s.incident > 0;
        s.incident = s.incident.saturating_sub(1);
        let burst = if self.rng.random_bool(0.01) {
            self.rng.random_range(2.0..5.0)
        } else {
            1.0
        };
        let load = Self::seasonality(ts) * burst * self.rng.random_range(0.85..1.15);
        // `base` is the rate per 10 s: a longer step carries proportionally more requests, so
        // a bucket's total does not depend on how often a server reports
        let expected = s.base * args.request_scale * load * args.step_ms as f64 / 10_000.0;
        let requests = if args.request_scale == 1.0 {
            expected.round()
        } else {
            // scaled down, a sample carries a request or two: rounding would erase the
            // traffic, so the fraction is drawn (the mean stays `expected`). Unscaled streams
            // draw nothing extra and stay identical to earlier versions'.
            expected.floor() + f64::from(u8::from(self.rng.random_bool(expected.fract())))
        };
        let errors = if incident {
            (requests * 0.2).round()
        } else {
            (requests * 0.005 * self.rng.random::<f64>()).round()
        };
        let cpu = (0.15 + 0.5 * load / 2.5 + if incident { 0.3 } else { 0.0 }).min(0.99);
        let memory = (0.3 + 0.2 * load / 2.5 + self.rng.random_range(0.0..0.05)).min(0.99);
        let rt = 20.0 + 30.0 * load + if incident { 400.0 } else { 0.0 };
        let status = if incident { "degraded" } else { "healthy" };
        let key = s.name.clone();
        self.tally.messages += 1;

        if malformed {
            self.tally.malformed += 1;
            let payload = match self.rng.random_range(0..5) {
                0 => format!(r#"{{"server_id":"{key}","timestamp":{ts},"cpu":"#), // truncated
                1 => format!(
                    r#"{{"server_id":"{key}","timestamp":{ts},"cpu":{}}}"#,
                    150.0 + cpu
                ),
                2 => format!(r#"{{"timestamp":{ts},"cpu":{cpu}}}"#),
                3 => format!(r#"{{"server_id":"{key}","timestamp":"not-a-time"}}"#),
                _ => format!(r#"{{"server_id":"{key}","timestamp":{ts},"status":"on-fire"}}"#),
            };
            return GeneratedMessage {
                key,
                payload: payload.into_bytes(),
            };
        }
        let mut payload = String::with_capacity(256);
        if prometheus {
            let rfc = chrono::DateTime::from_timestamp_millis(ts)
                .map(|d| d.to_rfc3339())
                .unwrap_or_default();
            let instance = format!("{key}-{}", s.round % u64::from(s.instances));
            let (name, value) = match s.round % 5 {
                0 => ("mcp_cpu_usage_ratio", cpu),
                1 => ("mcp_memory_usage_ratio", memory),
                2 => ("mcp_response_time_seconds", rt / 1000.0),
                3 => {
                    s.requests_total += requests;
                    ("mcp_requests_total", s.requests_total)
                }
                _ => {
                    s.errors_total += errors;
                    ("mcp_errors_total", s.errors_total)
                }
            };
            let _ = write!(
                payload,
                r#"{{"timestamp":"{rfc}","value":"{value}","name":"{name}","labels":{{"__name__":"{name}","job":"{key}","instance":"{instance}","platform":"{}"}}}}"#,
                s.platform
            );
            *self.tally.valid.entry(key.clone()).or_default() += 1;
        } else {
            // one sample per instance in an array, or a single object
            let n = if s.instances > 1 && self.rng.random_bool(0.5) {
                s.instances
            } else {
                1
            };
            if n > 1 {
                payload.push('[');
            }
            for inst in 0..n {
                if inst > 0 {
                    payload.push(',');
                }
                let event = if self.rng.random_bool(0.01) {
                    r#","event":"update""#
                } else {
                    ""
                };
                let _ = write!(
                    payload,
                    r#"{{"server_id":"{key}","timestamp":{ts},"cpu":{cpu:.4},"memory":{memory:.4},"response_time_ms":{rt:.1},"requests":{},"errors":{},"status":"{status}","instance_id":"{key}-{inst}","host":"host-{}","platform":"{}"{event}}}"#,
                    (requests / f64::from(n)).round(),
                    errors,
                    (inst + i as u32) % 50,
                    s.platform
                );
            }
            if n > 1 {
                payload.push(']');
                // the other instances' samples count toward the total too
                self.produced += n as usize - 1;
            }
            *self.tally.valid.entry(key.clone()).or_default() += u64::from(n);
        }
        GeneratedMessage {
            key,
            payload: payload.into_bytes(),
        }
    }
}

impl Iterator for Traffic {
    type Item = GeneratedMessage;

    fn next(&mut self) -> Option<GeneratedMessage> {
        if self.produced >= self.args.samples {
            return None;
        }
        self.produced += 1;
        Some(self.next_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::decode::{Decoded, Decoder};
    use crate::ingest::IngestConfig;

    #[test]
    fn tallies_match_what_the_decoder_sees() {
        let now = 1_763_700_000_000;
        let args = TrafficArgs {
            services: 37,
            samples: 20_000,
            malformed_ratio: 0.02,
            start_ms: now - 3_600_000,
            step_ms: 1000,
            ..TrafficArgs::default()
        };
        let mut traffic = Traffic::new(args);
        let mut decoder = Decoder::new(&IngestConfig::default());
        let mut out = Decoded::default();
        let mut per_service: BTreeMap<String, u64> = BTreeMap::new();
        let mut keys = std::collections::HashSet::new();
        for m in traffic.by_ref() {
            out.clear();
            decoder.decode(&m.payload, now, &mut out);
            for s in &out.samples {
                assert_eq!(s.service_id, m.key);
                assert!(
                    keys.insert((s.service_id.clone(), s.ts_ms, s.series)),
                    "duplicate key {s}"
                );
                *per_service.entry(s.service_id.clone()).or_default() += 1;
            }
            assert!(out.rejected.len() <= 1);
        }
        let tally = traffic.tally;
        assert_eq!(per_service, tally.valid);
        assert!(tally.valid_total() + tally.malformed >= 20_000);
        assert!(tally.malformed > 200, "{}", tally.malformed);
    }
}
