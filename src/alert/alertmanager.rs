//! The same notifications as an Alertmanager webhook (the `version: "4"` payload Alertmanager
//! itself posts to webhook receivers), so anything that consumes Alertmanager webhooks can
//! consume mcpwatch's alerts. One alert per message, grouped by (alertname, service, metric).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::alert::discord::{human, rfc3339};
use crate::alert::tracker::Notification;

/// `alertname` label of every alert.
pub const ALERT_NAME: &str = "McpwatchAnomaly";
/// Alertmanager's "not resolved yet" end time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The webhook body for `n`.
pub fn payload(n: &Notification) -> Value {
    let a = &n.anomaly;
    let status = if n.is_resolved() {
        "resolved"
    } else {
        "firing"
    };
    let labels: BTreeMap<&str, String> = [
        ("alertname", ALERT_NAME.to_string()),
        ("service", a.service_id.clone()),
        ("metric", a.metric.clone()),
        ("source", a.source.as_str().to_string()),
        ("severity", n.severity.as_str().to_string()),
    ]
    .into_iter()
    .collect();
    let mut annotations: BTreeMap<&str, String> = [
        (
            "summary",
            format!(
                "{} anomaly on {} {} (score {:.2})",
                n.severity, a.service_id, a.metric, a.score
            ),
        ),
        ("score", format!("{:.4}", a.score)),
        ("value", human(a.value)),
        ("detector", a.detector.clone()),
        ("reason", n.reason.as_str().to_string()),
    ]
    .into_iter()
    .collect();
    if let Some(e) = a.expected {
        annotations.insert("expected", human(e));
    }
    if let Some(m) = &a.message {
        annotations.insert("description", m.clone());
    }
    let group_labels: BTreeMap<&str, String> = labels
        .iter()
        .filter(|(k, _)| matches!(**k, "alertname" | "service" | "metric"))
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let group_key = format!(
        "{{}}:{{{}}}",
        group_labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // FNV-1a over the sorted labels: stable across builds, like Alertmanager's own fingerprint
    let mut fingerprint: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in &labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            fingerprint = (fingerprint ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let ends_at = match n.ended_ms {
        Some(t) if n.is_resolved() => rfc3339(t),
        _ => ZERO_TIME.to_string(),
    };
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "mcpwatch",
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(n.started_ms),
            "endsAt": ends_at,
            "generatorURL": "",
            "fingerprint": format!("{fingerprint:016x}"),
        }],
    })
}
