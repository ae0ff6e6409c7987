//! Turns a stream of anomalies into incidents and incidents into few notifications: one when
//! an incident opens, one if it escalates to a worse severity, and one when it resolves.
//!
//! - **De-duplication**: per (service, metric, severity) a notification is sent at most once per
//!   `cooldown` (wall clock). An incident that opens again within the cooldown of the previous
//!   one's alert (a flapping series) stays silent, and so does its resolution.
//! - **Hysteresis**: an incident of a series resolves only when a point of that series is
//!   normal and no abnormal point was seen for `resolve_after` (series time) before it; every
//!   abnormal point, alerted or not, pushes the resolution back.
//! - Incidents that hear nothing for `expire_after` (wall clock: the service went away, or the
//!   status updates were dropped) resolve as expired; forecast incidents resolve once no
//!   forecast was flagged for `resolve_after` (there is no stream of normal forecasts).
//!
//! Pure state, no I/O: the alerter's task feeds it and hands the notifications to the sinks.

use std::collections::HashMap;

use crate::alert::event::{AlertEvent, Anomaly, AnomalySource, Severity};

/// The tracker's rules (from [`crate::alert::AlertConfig`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerRules {
    pub cooldown_ms: i64,
    pub resolve_after_ms: i64,
    pub expire_after_ms: i64,
    /// Events about points older than this (wall clock) are replays: ignored. 0 = no limit.
    pub max_event_age_ms: i64,
    pub max_incidents: usize,
    pub min_severity: Severity,
}

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A new incident.
    Opened,
    /// The incident reached a worse severity.
    Escalated,
    /// The series has been normal for `resolve_after`.
    Recovered,
    /// Nothing heard for `expire_after` (or, for a forecast, not flagged again).
    Expired,
}

impl Reason {
    pub fn is_resolution(self) -> bool {
        matches!(self, Reason::Recovered | Reason::Expired)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Opened => "opened",
            Reason::Escalated => "escalated",
            Reason::Recovered => "recovered",
            Reason::Expired => "expired",
        }
    }
}

/// One message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub reason: Reason,
    /// Firing: the point that triggered it. Resolved: the incident's worst point.
    pub anomaly: Anomaly,
    /// Worst severity of the incident so far.
    pub severity: Severity,
    /// Series time of the incident's first anomalous point.
    pub started_ms: i64,
    /// Resolved: series time of the normal point that resolved it (wall time when expired).
    pub ended_ms: Option<i64>,
    /// Anomalous points in the incident so far.
    pub points: u32,
}

impl Notification {
    pub fn is_resolved(&self) -> bool {
        self.reason.is_resolution()
    }
}

type Key = (String, String, AnomalySource);

#[derive(Debug, Clone)]
struct Incident {
    /// Worst point so far.
    peak: Anomaly,
    severity: Severity,
    started_ms: i64,
    /// Series time of the last abnormal point.
    last_abnormal_ms: i64,
    /// Wall time of the last event about this series.
    last_heard_wall: i64,
    /// Wall time of the last notification about this incident (`None`: never notified).
    notified_wall: Option<i64>,
    points: u32,
}

/// What the tracker did, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Anomalies that produced no notification (same incident, or within the cooldown).
    pub suppressed: u64,
    /// Events ignored as replays of old points.
    pub stale: u64,
    /// Anomalies ignored because `max_incidents` incidents were open.
    pub overflow: u64,
}

/// Incidents per (service, metric, source) and the last alert per (…, severity).
#[derive(Debug)]
pub struct Tracker {
    rules: TrackerRules,
    incidents: HashMap<Key, Incident>,
    /// Wall time of the last firing notification per (key, severity), pruned after the cooldown.
    last_fired: HashMap<(Key, Severity), i64>,
    pub stats: TrackerStats,
}

impl Tracker {
    pub fn new(rules: TrackerRules) -> Tracker {
        Tracker {
            rules,
            incidents: HashMap::new(),
            last_fired: HashMap::new(),
            stats: TrackerStats::default(),
        }
    }

    /// Open incidents.
    pub fn open_incidents(&self) -> usize {
        self.incidents.len()
    }

    fn stale(&self, ts_ms: i64, now: i64) -> bool {
        self.rules.max_event_age_ms > 0 && now - ts_ms > self.rules.max_event_age_ms
    }

    fn may_fire(&self, key: &Key, severity: Severity, now: i64) -> bool {
        match self.last_fired.get(&(key.clone(), severity)) {
            Some(&t) => now - t >= self.rules.cooldown_ms,
            None => true,
        }
    }

    fn fired(&mut self, key: &Key, severity: Severity, now: i64) {
        self.last_fired.insert((key.clone(), severity), now);
    }

    /// Folds one event in at wall time `now`; returns the notification to send, if any.
    pub fn on_event(&mut self, event: AlertEvent, now: i64) -> Option<Notification> {
        match event {
            AlertEvent::Anomaly(a) => self.on_anomaly(a, now),
            AlertEvent::ForecastAnomaly(mut a) => {
                a.source = AnomalySource::Forecast;
                self.on_anomaly(a, now)
            }
            AlertEvent::Status {
                service_id,
                metric,
                source,
                ts_ms,
                normal,
            } => {
                if self.stale(ts_ms, now) {
                    self.stats.stale += 1;
                    return None;
                }
                let key = (service_id, metric, source);
                let inc = self.incidents.get_mut(&key)?;
                inc.last_heard_wall = now;
                if !normal {
                    inc.last_abnormal_ms = inc.last_abnormal_ms.max(ts_ms);
                    return None;
                }
                if ts_ms - inc.last_abnormal_ms < self.rules.resolve_after_ms {
                    return None;
                }
                let inc = self.incidents.remove(&key)?;
                Self::resolution(inc, Reason::Recovered, ts_ms)
            }
        }
    }

    fn on_anomaly(&mut self, a: Anomaly, now: i64) -> Option<Notification> {
        if self.stale(a.ts_ms, now) {
            self.stats.stale += 1;
            return None;
        }
        let severity = a.severity;
        let key: Key = (a.service_id.clone(), a.metric.clone(), a.source);
        if let Some(inc) = self.incidents.get_mut(&key) {
            inc.last_heard_wall = now;
            inc.last_abnormal_ms = inc.last_abnormal_ms.max(a.ts_ms);
            inc.points = inc.points.saturating_add(1);
            if a.score > inc.peak.score {
                inc.peak = a.clone();
            }
            let escalates = severity > inc.severity;
            if escalates {
                inc.severity = severity;
            }
            let reason = (escalates
                && severity >= self.rules.min_severity
                && self.may_fire(&key, severity, now))
            .then_some(Reason::Escalated);
            let Some(reason) = reason else {
                self.stats.suppressed += 1;
                return None;
            };
            let inc = self.incidents.get_mut(&key)?;
            inc.notified_wall = Some(now);
            let n = Notification {
                reason,
                anomaly: a,
                severity: inc.severity,
                started_ms: inc.started_ms,
                ended_ms: None,
                points: inc.points,
            };
            self.fired(&key, severity, now);
            return Some(n);
        }
        if severity < self.rules.min_severity {
            return None;
        }
        if self.incidents.len() >= self.rules.max_incidents {
            self.stats.overflow += 1;
            return None;
        }
        let notify = self.may_fire(&key, severity, now);
        self.incidents.insert(
            key.clone(),
            Incident {
                peak: a.clone(),
                severity,
                started_ms: a.ts_ms,
                last_abnormal_ms: a.ts_ms,
                last_heard_wall: now,
                notified_wall: notify.then_some(now),
                points: 1,
            },
        );
        if !notify {
            self.stats.suppressed += 1;
            return None;
        }
        self.fired(&key, severity, now);
        Some(Notification {
            reason: Reason::Opened,
            anomaly: a,
            severity,
            started_ms: key_started(&self.incidents, &key),
            ended_ms: None,
            points: 1,
        })
    }

    fn resolution(inc: Incident, reason: Reason, ended_ms: i64) -> Option<Notification> {
        // an incident nobody was told about ends as silently as it began
        inc.notified_wall?;
        Some(Notification {
            reason,
            anomaly: inc.peak,
            severity: inc.severity,
            started_ms: inc.started_ms,
            ended_ms: Some(ended_ms),
            points: inc.points,
        })
    }

    /// Expires incidents at wall time `now` and forgets cooldowns that ran out.
    pub fn tick(&mut self, now: i64) -> Vec<Notification> {
        let rules = &self.rules;
        let expired: Vec<Key> = self
            .incidents
            .iter()
            .filter(|(k, inc)| {
                let quiet = now - inc.last_heard_wall;
                quiet >= rules.expire_after_ms
                    || (k.2 == AnomalySource::Forecast && quiet >= rules.resolve_after_ms)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in expired {
            if let Some(inc) = self.incidents.remove(&k) {
                out.extend(Self::resolution(inc, Reason::Expired, now));
            }
        }
        let cooldown = self.rules.cooldown_ms;
        self.last_fired.retain(|_, t| now - *t < cooldown);
        out
    }
}

fn key_started(incidents: &HashMap<Key, Incident>, key: &Key) -> i64 {
    incidents.get(key).map_or(0, |i| i.started_ms)
}
