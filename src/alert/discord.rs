//! The Discord webhook message for a notification: one embed, coloured by state, that reads
//! well on a phone. Mentions are disabled (`allowed_mentions.parse = []`), so a service id can
//! never ping `@everyone`; every text is cut to Discord's limits.

use serde_json::{json, Value};

use crate::alert::event::Severity;
use crate::alert::tracker::{Notification, Reason};

/// Embed colours.
const RED: u32 = 0xE7_4C_3C;
const ORANGE: u32 = 0xF3_9C_12;
const GREEN: u32 = 0x2E_CC_71;

/// Who the message appears to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscordIdentity {
    pub bot_name: String,
    /// Avatar image URL (empty: the webhook's own).
    pub avatar_url: String,
}

/// Cuts `s` to at most `max` characters (Discord counts characters), marking the cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A number the way an operator reads it: 3 significant decimals, no exponent for everyday sizes.
pub fn human(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e9).contains(&a) {
        format!("{x:.3e}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// RFC 3339 (UTC, seconds) of epoch milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The webhook body for `n`.
pub fn payload(id: &DiscordIdentity, n: &Notification) -> Value {
    let a = &n.anomaly;
    let target = format!("{} · {}", a.service_id, a.metric);
    let (title, colour) = if n.is_resolved() {
        (format!("✅ RESOLVED: {target}"), GREEN)
    } else {
        let icon = match n.severity {
            Severity::Critical => "🔴",
            Severity::Warning => "🟠",
        };
        let what = match n.reason {
            Reason::Escalated => "escalated to ",
            _ => "",
        };
        (
            format!(
                "{icon} {what}{} anomaly: {target}",
                n.severity.as_str().to_uppercase()
            ),
            if n.severity == Severity::Critical {
                RED
            } else {
                ORANGE
            },
        )
    };
    let expected = a
        .expected
        .map(|e| format!(" (expected ≈ {})", human(e)))
        .unwrap_or_default();
    let mut description = if n.is_resolved() {
        let how = match n.reason {
            Reason::Expired => "closed without further news (expired) at",
            _ => "back to normal at",
        };
        format!(
            "{how} {}. Worst point: {} = {}{expected}, score {:.2} at {} ({} anomalous point{}).",
            rfc3339(n.ended_ms.unwrap_or(a.ts_ms)),
            a.metric,
            human(a.value),
            a.score,
            rfc3339(a.ts_ms),
            n.points,
            if n.points == 1 { "" } else { "s" },
        )
    } else {
        format!(
            "{} = **{}**{expected}, anomaly score **{:.2}** ({} detector, {} data).",
            a.metric,
            human(a.value),
            a.score,
            a.detector,
            a.source.as_str(),
        )
    };
    if let Some(m) = &a.message {
        description.push('\n');
        description.push_str(m);
    }
    let inline = |name: &str, value: String| json!({"name": name, "value": cut(&value, 1024), "inline": true});
    let mut fields = vec![
        inline("service", a.service_id.clone()),
        inline("metric", a.metric.clone()),
        inline("severity", n.severity.as_str().to_string()),
        inline("score", format!("{:.2}", a.score)),
        inline("value", human(a.value)),
    ];
    if let Some(e) = a.expected {
        fields.push(inline("expected", human(e)));
    }
    fields.push(inline("since", rfc3339(n.started_ms)));
    let mut body = json!({
        "username": cut(&id.bot_name, 80),
        "allowed_mentions": {"parse": []},
        "embeds": [{
            "title": cut(&title, 256),
            "description": cut(&description, 4096),
            "color": colour,
            "timestamp": rfc3339(n.ended_ms.unwrap_or(a.ts_ms)),
            "fields": fields,
            "footer": {"text": format!("mcpwatch · {}", n.reason.as_str())},
        }],
    });
    if !id.avatar_url.is_empty() {
        body["avatar_url"] = Value::String(id.avatar_url.clone());
    }
    body
}
