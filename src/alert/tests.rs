//! The tracker's rules, and the alerter end to end against a webhook receiver spawned here
//! (axum on 127.0.0.1:0, recording every request and answering from a script).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::*;

const HOUR: i64 = 3_600_000;
const T0: i64 = 1_763_683_200_000;
/// The token part of the webhook path: what must never be logged.
const TOKEN: &str = "s3cr3t-t0ken-never-logged";

fn anomaly(service: &str, metric: &str, ts_ms: i64, score: f64) -> Anomaly {
    Anomaly {
        service_id: service.into(),
        metric: metric.into(),
        source: AnomalySource::Stream,
        ts_ms,
        score,
        value: 512.0,
        expected: Some(48.0),
        severity: Severity::from_score(score, 0.8),
        detector: "mcpwatch".into(),
        message: None,
    }
}

fn status(service: &str, metric: &str, ts_ms: i64, normal: bool) -> AlertEvent {
    AlertEvent::Status {
        service_id: service.into(),
        metric: metric.into(),
        source: AnomalySource::Stream,
        ts_ms,
        normal,
    }
}

fn rules() -> TrackerRules {
    AlertConfig::default().rules()
}

// ------------------------------------------------------------------------------ tracker

#[test]
fn one_alert_per_incident_then_one_resolve_after_the_hysteresis() {
    let mut t = Tracker::new(rules());
    let now = T0 + 10 * 60_000;
    let first = t
        .on_event(AlertEvent::Anomaly(anomaly("fs", "cpu", T0, 0.5)), now)
        .unwrap();
    assert_eq!(first.reason, Reason::Opened);
    // more anomalous points of the same incident: silent
    assert!(t
        .on_event(
            AlertEvent::Anomaly(anomaly("fs", "cpu", T0 + HOUR, 0.6)),
            now + HOUR
        )
        .is_none());
    assert!(t
        .on_event(status("fs", "cpu", T0 + 2 * HOUR, false), now + 2 * HOUR)
        .is_none());
    // normal, but only 1 h after the last abnormal point (resolve_after = 2 h)
    assert!(t
        .on_event(status("fs", "cpu", T0 + 3 * HOUR, true), now + 3 * HOUR)
        .is_none());
    let resolved = t
        .on_event(status("fs", "cpu", T0 + 4 * HOUR, true), now + 4 * HOUR)
        .unwrap();
    assert_eq!(resolved.reason, Reason::Recovered);
    assert_eq!(
        resolved.anomaly.score, 0.6,
        "the resolve shows the worst point"
    );
    assert_eq!(resolved.points, 2);
    assert_eq!(resolved.started_ms, T0);
    assert_eq!(t.open_incidents(), 0);
    assert_eq!(t.stats.suppressed, 1);
}

#[test]
fn a_flapping_series_is_not_alerted_twice_within_the_cooldown() {
    let mut t = Tracker::new(rules());
    let mut now = T0;
    assert!(t
        .on_event(AlertEvent::Anomaly(anomaly("fs", "cpu", T0, 0.5)), now)
        .is_some());
    now += 60_000;
    assert!(t
        .on_event(status("fs", "cpu", T0 + 2 * HOUR, true), now)
        .is_some());
    // a new incident 2 minutes after the first alert: within the 30-minute cooldown
    now += 60_000;
    assert!(t
        .on_event(
            AlertEvent::Anomaly(anomaly("fs", "cpu", T0 + 3 * HOUR, 0.5)),
            now
        )
        .is_none());
    // ...and its resolve is as silent as its start
    now += 60_000;
    assert!(t
        .on_event(status("fs", "cpu", T0 + 6 * HOUR, true), now)
        .is_none());
    // after the cooldown the same key alerts again
    now += 31 * 60_000;
    assert!(t
        .on_event(
            AlertEvent::Anomaly(anomaly("fs", "cpu", T0 + 7 * HOUR, 0.5)),
            now
        )
        .is_some());
    // another metric or service is another key
    assert!(t
        .on_event(
            AlertEvent::Anomaly(anomaly("fs", "memory", T0 + 7 * HOUR, 0.5)),
            now
        )
        .is_some());
    assert!(t
        .on_event(
            AlertEvent::Anomaly(anomaly("gh", "cpu", T0 + 7 * HOUR, 0.5)),
            now
        )
        .is_some());
}

#[test]
fn escalation_expiry_staleness_and_forecasts() {
    let mut t = Tracker::new(rules());
    let now = T0;
    assert_eq!(
        t.on_event(AlertEvent::Anomaly(anomaly("fs", "cpu", T0, 0.5)), now)
            .unwrap()
            .severity,
        Severity::Warning
    );
    let up = t
        .on_event(
            AlertEvent::Anomaly(anomaly("fs", "cpu", T0 + HOUR, 0.9)),
            now + 1000,
        )
        .unwrap();
    assert_eq!(
        (up.reason, up.severity),
        (Reason::Escalated, Severity::Critical)
    );
    // still going after the cooldown: no repeat, one message per incident
    let later = now + 31 * 60_000;
    assert!(t
        .on_event(
            AlertEvent::Anomaly(anomaly("fs", "cpu", T0 + 2 * HOUR, 0.5)),
            later
        )
        .is_none());
    // nothing heard for a day: expires
    assert!(t.tick(later + 23 * HOUR).is_empty());
    let expired = t.tick(later + 24 * HOUR);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].reason, Reason::Expired);
    // replays of old points are not alerted on
    assert!(t
        .on_event(
            AlertEvent::Anomaly(anomaly("old", "cpu", T0, 0.9)),
            T0 + 5 * HOUR
        )
        .is_none());
    assert_eq!(t.stats.stale, 1);
    // a forecast anomaly opens its own incident and resolves when not flagged again
    let f = t
        .on_event(
            AlertEvent::ForecastAnomaly(anomaly("fs", "total_events", T0 + 30 * HOUR, 0.7)),
            T0 + 30 * HOUR,
        )
        .unwrap();
    assert_eq!(f.anomaly.source, AnomalySource::Forecast);
    assert!(t.tick(T0 + 31 * HOUR).is_empty());
    let done = t.tick(T0 + 32 * HOUR);
    assert_eq!(done.len(), 1);
    assert!(done[0].is_resolved());
}

#[test]
fn min_severity_and_max_incidents_are_honoured() {
    let mut t = Tracker::new(TrackerRules {
        min_severity: Severity::Critical,
        max_incidents: 1,
        ..rules()
    });
    assert!(t
        .on_event(AlertEvent::Anomaly(anomaly("a", "cpu", T0, 0.5)), T0)
        .is_none());
    assert!(t
        .on_event(AlertEvent::Anomaly(anomaly("a", "cpu", T0, 0.9)), T0)
        .is_some());
    assert!(t
        .on_event(AlertEvent::Anomaly(anomaly("b", "cpu", T0, 0.9)), T0)
        .is_none());
    assert_eq!(t.stats.overflow, 1);
}

// ---------------------------------------------------------------------- payloads, config

#[test]
fn discord_message_reads_well_and_cannot_ping() {
    let n = Notification {
        reason: Reason::Opened,
        anomaly: anomaly("github-003", "response_time", T0, 0.93),
        severity: Severity::Critical,
        started_ms: T0,
        ended_ms: None,
        points: 1,
    };
    let id = DiscordIdentity {
        bot_name: "MCP-dangerous".into(),
        avatar_url: "https://example.invalid/a.png".into(),
    };
    let body = discord::payload(&id, &n);
    assert_eq!(body["username"], "MCP-dangerous");
    assert_eq!(body["avatar_url"], "https://example.invalid/a.png");
    assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));
    let embed = &body["embeds"][0];
    assert_eq!(
        embed["title"],
        "🔴 CRITICAL anomaly: github-003 · response_time"
    );
    let d = embed["description"].as_str().unwrap();
    assert!(
        d.contains("response_time = **512.0** (expected ≈ 48.000)"),
        "{d}"
    );
    assert!(d.contains("score **0.93**"), "{d}");
    assert_eq!(embed["color"], 0xE74C3C);
    let resolved = Notification {
        reason: Reason::Recovered,
        ended_ms: Some(T0 + 3 * HOUR),
        ..n
    };
    let body = discord::payload(&id, &resolved);
    let title = body["embeds"][0]["title"].as_str().unwrap();
    assert_eq!(title, "✅ RESOLVED: github-003 · response_time");
    assert_eq!(body["embeds"][0]["color"], 0x2ECC71);
    let long = Notification {
        anomaly: anomaly(&"x".repeat(5000), "cpu", T0, 0.5),
        ..resolved
    };
    let body = discord::payload(&id, &long);
    assert!(body["embeds"][0]["title"].as_str().unwrap().chars().count() <= 256);
    assert!(
        body["embeds"][0]["description"]
            .as_str()
            .unwrap()
            .chars()
            .count()
            <= 4096
    );
}

#[test]
fn alertmanager_payload_is_version_4() {
    let n = Notification {
        reason: Reason::Opened,
        anomaly: anomaly("fs", "cpu", T0, 0.5),
        severity: Severity::Warning,
        started_ms: T0,
        ended_ms: None,
        points: 1,
    };
    let firing = alertmanager::payload(&n);
    assert_eq!(firing["version"], "4");
    assert_eq!(firing["status"], "firing");
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "McpwatchAnomaly");
    assert_eq!(alert["labels"]["service"], "fs");
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alert["startsAt"], "2025-11-21T00:00:00Z");
    let resolved = alertmanager::payload(&Notification {
        reason: Reason::Recovered,
        ended_ms: Some(T0 + 2 * HOUR),
        ..n
    });
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["endsAt"], "2025-11-21T02:00:00Z");
    assert_eq!(
        resolved["alerts"][0]["fingerprint"], alert["fingerprint"],
        "firing and resolved are the same alert"
    );
}

#[test]
fn env_wins_over_the_section_and_bad_urls_are_refused_without_quoting_them() {
    let mut cfg = AlertConfig::default();
    cfg.apply_env(|k| match k {
        ENV_DISCORD_WEBHOOK_URL => Some(format!("https://discord.test/api/webhooks/1/{TOKEN}")),
        ENV_DISCORD_BOT_NAME => Some("pager".into()),
        _ => None,
    });
    assert!(cfg.discord_webhook_url.is_set());
    assert_eq!(cfg.discord_bot_name, "pager");
    cfg.validate().unwrap();
    let mut bad = AlertConfig::default();
    bad.apply_env(|k| (k == ENV_DISCORD_WEBHOOK_URL).then(|| format!("ftp:/{TOKEN}")));
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("discord_webhook_url"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
    for c in [
        AlertConfig {
            max_attempts: 0,
            ..AlertConfig::default()
        },
        AlertConfig {
            backoff_max_ms: 1,
            ..AlertConfig::default()
        },
        AlertConfig {
            discord_bot_name: String::new(),
            ..AlertConfig::default()
        },
    ] {
        assert!(c.validate().is_err(), "{c:?}");
    }
}

#[test]
fn retry_after_comes_from_the_body_then_the_headers() {
    let mut h = reqwest::header::HeaderMap::new();
    assert_eq!(
        deliver::retry_after(&h, br#"{"retry_after": 0.25, "global": false}"#),
        Some(Duration::from_millis(250))
    );
    h.insert("retry-after", "2".parse().unwrap());
    assert_eq!(deliver::retry_after(&h, b""), Some(Duration::from_secs(2)));
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("x-ratelimit-reset-after", "1.5".parse().unwrap());
    assert_eq!(
        deliver::retry_after(&h, b"not json"),
        Some(Duration::from_millis(1500))
    );
    let policy = AlertConfig::default().retry_policy();
    assert_eq!(deliver::backoff(&policy, 1), Duration::from_millis(500));
    assert_eq!(deliver::backoff(&policy, 3), Duration::from_millis(2000));
    assert_eq!(deliver::backoff(&policy, 30), Duration::from_secs(30));
}

// ------------------------------------------------------------- a webhook receiver, for real

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    Status(u16),
    /// 429 with Discord's JSON body `retry_after` (seconds).
    RateLimited(f64),
    /// Never answers.
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub at: Instant,
    pub path: String,
    pub body: Value,
}

#[derive(Clone, Default)]
pub(crate) struct Receiver {
    pub requests: Arc<Mutex<Vec<Received>>>,
    /// Replies in order; 204 once it runs out.
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl Receiver {
    /// Starts the receiver; returns it and its base URL.
    pub(crate) async fn spawn(script: Vec<Reply>) -> (Receiver, String) {
        let r = Receiver {
            requests: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
        };
        let app = axum::Router::new().fallback(record).with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, format!("http://{addr}"))
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived (panics after `timeout`).
    pub(crate) async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} requests, got {}: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn record(State(r): State<Receiver>, uri: Uri, _h: HeaderMap, body: Bytes) -> Response {
    r.requests.lock().unwrap().push(Received {
        at: Instant::now(),
        path: uri.path().to_string(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let reply = r.script.lock().unwrap().pop_front();
    match reply {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(Reply::Status(s)) => StatusCode::from_u16(s).unwrap().into_response(),
        Some(Reply::RateLimited(secs)) => (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({
                "message": "You are being rate limited.",
                "retry_after": secs,
                "global": false
            })),
        )
            .into_response(),
        Some(Reply::Hang) => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

/// A test clock.
pub(crate) fn manual_clock(start: i64) -> (Arc<AtomicI64>, Arc<dyn Fn() -> i64 + Send + Sync>) {
    let t = Arc::new(AtomicI64::new(start));
    let c = t.clone();
    (t, Arc::new(move || c.load(Ordering::Relaxed)))
}

fn fast_config(base: &str) -> AlertConfig {
    AlertConfig {
        discord_webhook_url: SecretUrl::new(format!("{base}/api/webhooks/123/{TOKEN}")),
        backoff_initial_ms: 20,
        backoff_max_ms: 200,
        request_timeout_ms: 2000,
        ..AlertConfig::default()
    }
}

fn start(
    cfg: AlertConfig,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
) -> (Alerter, AlertMetrics, CancellationToken) {
    let metrics = AlertMetrics::default();
    let shutdown = CancellationToken::new();
    let alerter = Alerter::start(AlerterArgs {
        config: cfg,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        clock,
    })
    .unwrap();
    assert!(alerter.is_running());
    (alerter, metrics, shutdown)
}

fn sent(m: &AlertMetrics, sink: &'static str, state: &'static str, outcome: &'static str) -> u64 {
    m.notifications
        .get_or_create(&NotificationLabels {
            sink,
            state,
            outcome,
        })
        .get()
}

#[tokio::test]
async fn discord_gets_one_alert_per_incident_and_a_resolve_after_recovery() {
    let (rx, base) = Receiver::spawn(vec![]).await;
    let (am, am_base) = Receiver::spawn(vec![]).await;
    let (now, clock) = manual_clock(T0);
    let cfg = AlertConfig {
        alertmanager_url: SecretUrl::new(format!("{am_base}/am")),
        ..fast_config(&base)
    };
    let (alerter, metrics, shutdown) = start(cfg, clock);
    let tx = alerter.sender();
    // an incident: three anomalous points an hour apart, then recovery
    for h in 0..3 {
        now.store(T0 + h * HOUR + 60_000, Ordering::Relaxed);
        assert!(tx.send(AlertEvent::Anomaly(anomaly(
            "github-003",
            "response_time",
            T0 + h * HOUR,
            0.5
        ))));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for h in 3..7 {
        now.store(T0 + h * HOUR + 60_000, Ordering::Relaxed);
        tx.send(status("github-003", "response_time", T0 + h * HOUR, true));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = rx.wait_for(2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got_after = rx.received();
    assert_eq!(got_after.len(), 2, "one firing + one resolved: {got:?}");
    assert_eq!(got[0].path, format!("/api/webhooks/123/{TOKEN}"));
    assert_eq!(got[0].body["username"], "MCP-dangerous");
    let t0 = got[0].body["embeds"][0]["title"].as_str().unwrap();
    let t1 = got[1].body["embeds"][0]["title"].as_str().unwrap();
    assert!(
        t0.contains("WARNING anomaly: github-003 · response_time"),
        "{t0}"
    );
    assert!(t1.starts_with("✅ RESOLVED"), "{t1}");
    // resolved at the first normal point 2 h after the last anomalous one (T0 + 2 h)
    let d1 = got[1].body["embeds"][0]["description"].as_str().unwrap();
    assert!(d1.contains("2025-11-21T04:00:00Z"), "{d1}");
    // the same two, as Alertmanager sees them
    let am_got = am.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(am_got[0].body["status"], "firing");
    assert_eq!(am_got[1].body["status"], "resolved");
    assert_eq!(sent(&metrics, "discord", "firing", "sent"), 1);
    assert_eq!(sent(&metrics, "discord", "resolved", "sent"), 1);
    assert_eq!(metrics.suppressed.get(), 2);
    shutdown.cancel();
    drop(tx);
    alerter.close().await;
}

#[tokio::test]
async fn retries_on_500_with_backoff_and_gives_up_on_400() {
    let (rx, base) = Receiver::spawn(vec![
        Reply::Status(500),
        Reply::Status(503),
        Reply::Status(200),
        Reply::Status(400),
    ])
    .await;
    let (_now, clock) = manual_clock(T0);
    let (alerter, metrics, shutdown) = start(fast_config(&base), clock);
    let tx = alerter.sender();
    tx.send(AlertEvent::Anomaly(anomaly("a", "cpu", T0, 0.5)));
    let got = rx.wait_for(3, Duration::from_secs(5)).await;
    // back-off 20 ms, then 40 ms
    assert!(got[1].at - got[0].at >= Duration::from_millis(20));
    assert!(got[2].at - got[1].at >= Duration::from_millis(40));
    assert_eq!(got[0].body, got[2].body, "the same message is retried");
    // a 400 is not retried
    tx.send(AlertEvent::Anomaly(anomaly("b", "cpu", T0, 0.5)));
    rx.wait_for(4, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 4);
    assert_eq!(sent(&metrics, "discord", "firing", "sent"), 1);
    assert_eq!(sent(&metrics, "discord", "firing", "failed"), 1);
    assert_eq!(
        metrics
            .retries
            .get_or_create(&SinkLabels { sink: "discord" })
            .get(),
        2
    );
    shutdown.cancel();
    drop(tx);
    alerter.close().await;
}

#[tokio::test]
async fn honours_discords_retry_after_on_429() {
    let (rx, base) = Receiver::spawn(vec![Reply::RateLimited(0.4), Reply::Status(204)]).await;
    let (_now, clock) = manual_clock(T0);
    let (alerter, metrics, shutdown) = start(fast_config(&base), clock);
    let tx = alerter.sender();
    tx.send(AlertEvent::Anomaly(anomaly("a", "cpu", T0, 0.5)));
    let got = rx.wait_for(2, Duration::from_secs(5)).await;
    let gap = got[1].at - got[0].at;
    // the back-off alone would be 20 ms: the 400 ms came from retry_after
    assert!(gap >= Duration::from_millis(400), "{gap:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sent(&metrics, "discord", "firing", "sent"), 1);
    assert_eq!(
        metrics
            .rate_limited
            .get_or_create(&SinkLabels { sink: "discord" })
            .get(),
        1
    );
    shutdown.cancel();
    drop(tx);
    alerter.close().await;
}

/// Collects everything `tracing` writes while the guard lives (this thread only, which is
/// where a current-thread runtime runs every task).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_webhook_url_never_reaches_a_log_line_an_error_or_the_config() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (rx, base) = Receiver::spawn(vec![
        Reply::Status(500),
        Reply::Status(500),
        Reply::Status(500),
        Reply::Status(404),
    ])
    .await;
    let (_now, clock) = manual_clock(T0);
    let cfg = AlertConfig {
        max_attempts: 3,
        ..fast_config(&base)
    };
    let printed = format!("{cfg:?} {}", serde_json::to_string(&cfg).unwrap());
    let (alerter, metrics, shutdown) = start(cfg.clone(), clock.clone());
    let tx = alerter.sender();
    tx.send(AlertEvent::Anomaly(anomaly("a", "cpu", T0, 0.5)));
    tx.send(AlertEvent::Anomaly(anomaly("b", "cpu", T0, 0.5)));
    rx.wait_for(4, Duration::from_secs(5)).await;
    // and a webhook nobody listens on: transport errors
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (dead_alerter, dead_metrics, dead_shutdown) = start(
        AlertConfig {
            max_attempts: 2,
            ..fast_config(&format!("http://{dead}"))
        },
        clock,
    );
    dead_alerter
        .sender()
        .send(AlertEvent::Anomaly(anomaly("c", "cpu", T0, 0.5)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while sent(&dead_metrics, "discord", "firing", "failed") == 0 {
        assert!(
            Instant::now() < deadline,
            "the dead webhook was never given up on"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while sent(&metrics, "discord", "firing", "failed") < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // errors the delivery returns directly
    let client = reqwest::Client::new();
    let (result, _) = deliver(
        &client,
        &SecretUrl::new(format!("http://{dead}/api/webhooks/9/{TOKEN}")),
        &serde_json::json!({}),
        &RetryPolicy {
            max_attempts: 1,
            ..cfg.retry_policy()
        },
        &CancellationToken::new(),
    )
    .await;
    let err = result.unwrap_err();
    let printed = format!("{printed} {err} {err:?}");
    shutdown.cancel();
    dead_shutdown.cancel();
    drop(tx);
    alerter.close().await;
    dead_alerter.close().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("alert not delivered"),
        "the failures were logged:\n{text}"
    );
    assert!(text.contains("HTTP 500"), "{text}");
    assert!(
        !text.contains(TOKEN),
        "a log line holds the webhook token:\n{text}"
    );
    assert!(
        !text.contains("/api/webhooks/"),
        "a log line holds the webhook path:\n{text}"
    );
    assert!(!printed.contains(TOKEN), "{printed}");
    assert!(printed.contains("<redacted>"), "{printed}");
}

#[tokio::test]
async fn a_hanging_webhook_only_delays_its_own_queue() {
    let (rx, base) = Receiver::spawn(vec![Reply::Hang]).await;
    let (_now, clock) = manual_clock(T0);
    let cfg = AlertConfig {
        queue_notifications: 2,
        request_timeout_ms: 60_000,
        ..fast_config(&base)
    };
    let (alerter, metrics, shutdown) = start(cfg, clock);
    let tx = alerter.sender();
    let started = Instant::now();
    let mut accepted = 0;
    for i in 0..2000 {
        accepted += usize::from(tx.send(AlertEvent::Anomaly(anomaly(
            &format!("s{i}"),
            "cpu",
            T0,
            0.5,
        ))));
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "sending must never wait"
    );
    rx.wait_for(1, Duration::from_secs(5)).await;
    // every event is accounted for: the queue took what it could, the rest was counted
    let dropped_events = metrics.events_dropped.get() as usize;
    assert_eq!(accepted + dropped_events, 2000);
    let deadline = Instant::now() + Duration::from_secs(5);
    while sent(&metrics, "discord", "firing", "dropped") == 0 {
        assert!(
            Instant::now() < deadline,
            "a full sink queue must drop and count"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rx.received().len(), 1, "the one request in flight hangs");
    // shutdown does not wait for the hanging request beyond the drain period
    shutdown.cancel();
    drop(tx);
    let closing = Instant::now();
    alerter.close().await;
    assert!(closing.elapsed() < Duration::from_secs(8));
}

/// The seed's variables reach the daemon's config through `Config::load`, on top of the file
/// and the `MCPWATCH_…` variables, and a loaded secret never prints.
#[test]
#[allow(clippy::result_large_err)]
fn config_load_honours_discord_and_anomaly_z_variables() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "alerts.toml",
            "[alert]\ndiscord_bot_name = \"from-file\"\n[anomaly]\nz_threshold = 4.0\n",
        )?;
        let c = crate::config::Config::load(Some(std::path::Path::new("alerts.toml"))).unwrap();
        assert_eq!(c.alert.discord_bot_name, "from-file");
        assert_eq!(c.anomaly.z_threshold, 4.0);
        assert!(!c.alert.discord_webhook_url.is_set());
        jail.set_env(
            ENV_DISCORD_WEBHOOK_URL,
            format!("https://discord.test/api/webhooks/7/{TOKEN}"),
        );
        jail.set_env(ENV_DISCORD_BOT_NAME, "from-env");
        jail.set_env("ANOMALY_Z", "2.5");
        let c = crate::config::Config::load(Some(std::path::Path::new("alerts.toml"))).unwrap();
        assert_eq!(c.alert.discord_bot_name, "from-env");
        assert_eq!(c.anomaly.z_threshold, 2.5);
        assert_eq!(
            c.alert.discord_webhook_url.expose(),
            format!("https://discord.test/api/webhooks/7/{TOKEN}")
        );
        let printed = c.to_json();
        assert!(!printed.contains(TOKEN), "{printed}");
        assert!(
            printed.contains("\"discord_webhook_url\": \"<redacted>\""),
            "{printed}"
        );
        jail.set_env("ANOMALY_Z", "lots");
        let err = crate::config::Config::load(None).unwrap_err().to_string();
        assert!(err.contains("ANOMALY_Z"), "{err}");
        jail.set_env("ANOMALY_Z", "3");
        jail.set_env(ENV_DISCORD_WEBHOOK_URL, format!("discord.test/{TOKEN}"));
        let err = crate::config::Config::load(None).unwrap_err().to_string();
        assert!(err.contains("alert"), "{err}");
        assert!(!err.contains(TOKEN), "{err}");
        Ok(())
    });
}
