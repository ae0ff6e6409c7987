//! The alerter's input: anomalies (from the streaming stage, or a flagged forecast from
//! `/plans`) and series status updates that drive resolution, sent through an [`AlertSender`]
//! that never waits.

use std::fmt;

use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// How bad an anomaly is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// `critical` at or above `critical_score`, else `warning`.
    pub fn from_score(score: f64, critical_score: f64) -> Severity {
        if score >= critical_score {
            Severity::Critical
        } else {
            Severity::Warning
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an anomaly was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalySource {
    /// A point of an observed series (the streaming stage).
    Stream,
    /// A forecast flagged as anomalous (`/plans`).
    Forecast,
}

impl AnomalySource {
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalySource::Stream => "stream",
            AnomalySource::Forecast => "forecast",
        }
    }

    pub fn parse(s: &str) -> Option<AnomalySource> {
        match s {
            "stream" => Some(AnomalySource::Stream),
            "forecast" => Some(AnomalySource::Forecast),
            _ => None,
        }
    }
}

/// One anomalous point: what is stored, cached, served by `/v1/anomalies` and alerted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub service_id: String,
    /// `cpu`, `memory`, `requests`, `errors`, `response_time`, or a forecast's metric name.
    pub metric: String,
    pub source: AnomalySource,
    /// Time of the point (bucket start for the stream; the forecast's time for a forecast).
    pub ts_ms: i64,
    /// Anomaly score in `[0, 1]`.
    pub score: f64,
    pub value: f64,
    /// What the detector expected there, when it has an opinion.
    pub expected: Option<f64>,
    pub severity: Severity,
    /// Detector (or model) that flagged it.
    pub detector: String,
    /// Free text for humans (forecast anomalies explain themselves here).
    pub message: Option<String>,
}

/// What the alerter is told.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertEvent {
    /// A point of a series scored at or above its alert threshold.
    Anomaly(Anomaly),
    /// A forecast flagged as anomalous (its `source` is taken as [`AnomalySource::Forecast`]).
    ForecastAnomaly(Anomaly),
    /// A point of a series that did not raise an alert: `normal` when it is back within its
    /// usual behaviour, `false` while it is still abnormal (an ongoing incident the detector
    /// reports only once). Sent for series with a recent anomaly; drives resolution.
    Status {
        service_id: String,
        metric: String,
        source: AnomalySource,
        ts_ms: i64,
        normal: bool,
    },
}

/// The producers' handle on the alerter's bounded queue: cheap to clone, never waits. When the
/// queue is full the event is dropped and counted (`mcpwatch_alert_events_dropped_total`).
#[derive(Clone)]
pub struct AlertSender {
    /// Sending half of the alerter's event queue (`None`: alerting is off, events vanish).
    /// The alerter's task owns the receiver.
    tx: Option<mpsc::Sender<AlertEvent>>,
    /// Events dropped at the door (queue full or alerter gone).
    dropped: Counter,
}

impl AlertSender {
    pub(crate) fn new(tx: mpsc::Sender<AlertEvent>, dropped: Counter) -> AlertSender {
        AlertSender {
            tx: Some(tx),
            dropped,
        }
    }

    /// A sender that goes nowhere (alerting disabled).
    pub fn disabled() -> AlertSender {
        AlertSender {
            tx: None,
            dropped: Counter::default(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `event` without waiting; `false` when it was dropped (counted) or alerting is off.
    pub fn send(&self, event: AlertEvent) -> bool {
        let Some(tx) = &self.tx else {
            return false;
        };
        match tx.try_send(event) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.inc();
                false
            }
        }
    }
}
