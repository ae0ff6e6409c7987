//! Alerts: the last hop of an anomaly (features → detection → **alert** → Discord /
//! Alertmanager).
//!
//! Producers (the detection stage; `/plans` for forecast anomalies) hold an [`AlertSender`] and
//! `try_send` [`AlertEvent`]s into a bounded queue: they never wait, and a full queue drops and
//! counts. The [`Alerter`]'s task folds the events into incidents ([`Tracker`]: de-duplication
//! per (service, metric, severity) with a cooldown, hysteresis before a resolve) and hands each
//! notification to one bounded queue per sink; each sink has its own task that posts with
//! retries ([`deliver`]), so a slow or hanging webhook delays nothing but its own messages.
//!
//! Sinks: a Discord webhook (`DISCORD_WEBHOOK_URL`, `DISCORD_BOT_NAME`, `DISCORD_BOT_AVATAR`, on
//! top of the `[alert]` section) and an Alertmanager-compatible webhook (`version: "4"` payload).
//! Webhook URLs are secrets ([`SecretUrl`]): never in a log line, an error or a printed config.

pub mod alertmanager;
pub mod deliver;
pub mod discord;
pub mod event;
pub mod secret;
pub mod tracker;

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use deliver::{deliver, RetryPolicy};
pub use discord::DiscordIdentity;
pub use event::{AlertEvent, AlertSender, Anomaly, AnomalySource, Severity};
pub use secret::SecretUrl;
pub use tracker::{Notification, Reason, Tracker, TrackerRules};

/// Environment variables read on top of the `[alert]` section (they win).
pub const ENV_DISCORD_WEBHOOK_URL: &str = "DISCORD_WEBHOOK_URL";
pub const ENV_DISCORD_BOT_NAME: &str = "DISCORD_BOT_NAME";
pub const ENV_DISCORD_BOT_AVATAR: &str = "DISCORD_BOT_AVATAR";

/// Errors of the alerting stage. None of them carries a webhook URL.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("invalid alert config: {0}")]
    InvalidConfig(String),
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("the webhook refused the message with HTTP {status} (not retried)")]
    Rejected { status: u16 },
    #[error("gave up after {attempts} attempts (last: {last})")]
    GaveUp { attempts: u32, last: String },
}

/// The `[alert]` section (`MCPWATCH_ALERT__<KEY>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// Run the alerter (it sends only to the webhooks that are set).
    pub enabled: bool,
    /// Discord webhook URL (secret; `DISCORD_WEBHOOK_URL` wins). Empty: no Discord alerts.
    pub discord_webhook_url: SecretUrl,
    /// Name the Discord messages appear under (`DISCORD_BOT_NAME` wins).
    pub discord_bot_name: String,
    /// Avatar image URL of the Discord messages (`DISCORD_BOT_AVATAR` wins). Empty: the
    /// webhook's own.
    pub discord_bot_avatar: String,
    /// Alertmanager-compatible webhook receiver URL (secret). Empty: none.
    pub alertmanager_url: SecretUrl,
    /// Least severity that raises an alert: `warning` or `critical`.
    pub min_severity: Severity,
    /// Per (service, metric, severity), at most one alert per this many seconds (an incident
    /// that opens again within it, a flapping series, stays silent).
    pub cooldown_secs: u64,
    /// An incident resolves once its series has had no abnormal point for this long (series
    /// time) and a normal point arrives.
    pub resolve_after_secs: u64,
    /// An incident that hears nothing for this long (wall clock) resolves as expired.
    pub expire_after_secs: u64,
    /// Points older than this when they reach the alerter (a replay, a backfill) are stored but
    /// not alerted on. 0 = no limit.
    pub max_event_age_secs: u64,
    /// Open incidents tracked at most.
    pub max_incidents: usize,
    /// Events queued for the alerter; when full they are dropped and counted.
    pub queue_events: usize,
    /// Notifications queued per webhook; when full they are dropped and counted.
    pub queue_notifications: usize,
    /// Timeout of one webhook request.
    pub request_timeout_ms: u64,
    /// Attempts per notification (1 = no retry).
    pub max_attempts: u32,
    /// First retry back-off; doubles per attempt up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Longest wait honoured from a 429's `retry_after`.
    pub max_retry_after_ms: u64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            enabled: true,
            discord_webhook_url: SecretUrl::default(),
            discord_bot_name: "MCP-dangerous".into(),
            discord_bot_avatar: String::new(),
            alertmanager_url: SecretUrl::default(),
            min_severity: Severity::Warning,
            cooldown_secs: 1800,
            resolve_after_secs: 7200,
            expire_after_secs: 86_400,
            max_event_age_secs: 10_800,
            max_incidents: 10_000,
            queue_events: 1024,
            queue_notifications: 256,
            request_timeout_ms: 10_000,
            max_attempts: 5,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            max_retry_after_ms: 300_000,
        }
    }
}

impl AlertConfig {
    /// Applies `DISCORD_WEBHOOK_URL`, `DISCORD_BOT_NAME` and `DISCORD_BOT_AVATAR` (as `lookup`
    /// returns them; empty values are ignored) on top of this config.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        if let Some(url) = get(ENV_DISCORD_WEBHOOK_URL) {
            self.discord_webhook_url = SecretUrl::new(url);
        }
        if let Some(name) = get(ENV_DISCORD_BOT_NAME) {
            self.discord_bot_name = name.trim().to_string();
        }
        if let Some(avatar) = get(ENV_DISCORD_BOT_AVATAR) {
            self.discord_bot_avatar = avatar.trim().to_string();
        }
    }

    /// Checks every field (the problem names the key; a URL's value is never quoted).
    pub fn validate(&self) -> Result<(), AlertError> {
        let bad = |m: String| Err(AlertError::InvalidConfig(m));
        if let Err(e) = self.discord_webhook_url.check() {
            return bad(format!(
                "discord_webhook_url (or {ENV_DISCORD_WEBHOOK_URL}) {e}"
            ));
        }
        if let Err(e) = self.alertmanager_url.check() {
            return bad(format!("alertmanager_url {e}"));
        }
        if self.discord_bot_name.trim().is_empty() || self.discord_bot_name.chars().count() > 80 {
            return bad("discord_bot_name must be 1 to 80 characters".into());
        }
        if !self.discord_bot_avatar.is_empty()
            && reqwest::Url::parse(&self.discord_bot_avatar).is_err()
        {
            return bad("discord_bot_avatar must be an image URL (or empty)".into());
        }
        let positive = [
            ("resolve_after_secs", self.resolve_after_secs),
            ("expire_after_secs", self.expire_after_secs),
            ("max_incidents", self.max_incidents as u64),
            ("queue_events", self.queue_events as u64),
            ("queue_notifications", self.queue_notifications as u64),
            ("request_timeout_ms", self.request_timeout_ms),
            ("max_attempts", u64::from(self.max_attempts)),
            ("backoff_initial_ms", self.backoff_initial_ms),
        ];
        for (key, v) in positive {
            if v == 0 {
                return bad(format!("{key} must be at least 1"));
            }
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return bad("backoff_max_ms must be at least backoff_initial_ms".into());
        }
        if self.max_attempts > 20 {
            return bad(format!(
                "max_attempts must be at most 20, got {}",
                self.max_attempts
            ));
        }
        if self.expire_after_secs < self.resolve_after_secs {
            return bad("expire_after_secs must be at least resolve_after_secs".into());
        }
        Ok(())
    }

    /// Whether any webhook is configured.
    pub fn has_sink(&self) -> bool {
        self.discord_webhook_url.is_set() || self.alertmanager_url.is_set()
    }

    pub fn rules(&self) -> TrackerRules {
        TrackerRules {
            cooldown_ms: secs_ms(self.cooldown_secs),
            resolve_after_ms: secs_ms(self.resolve_after_secs),
            expire_after_ms: secs_ms(self.expire_after_secs),
            max_event_age_ms: secs_ms(self.max_event_age_secs),
            max_incidents: self.max_incidents,
            min_severity: self.min_severity,
        }
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial: Duration::from_millis(self.backoff_initial_ms),
            max: Duration::from_millis(self.backoff_max_ms),
            max_retry_after: Duration::from_millis(self.max_retry_after_ms),
        }
    }
}

fn secs_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Labels of a notification count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// `discord` or `alertmanager`.
    pub sink: &'static str,
    /// `firing` or `resolved`.
    pub state: &'static str,
    /// `sent`, `failed` (refused or out of attempts) or `dropped` (queue full).
    pub outcome: &'static str,
}

/// Labels of a per-sink count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: &'static str,
}

/// The alerter's figures. Cheap to clone.
#[derive(Clone, Default)]
pub struct AlertMetrics {
    /// Events dropped because the alerter's queue was full.
    pub events_dropped: Counter,
    /// Notifications by sink, state and outcome.
    pub notifications: Family<NotificationLabels, Counter>,
    /// Requests retried, by sink.
    pub retries: Family<SinkLabels, Counter>,
    /// 429 answers, by sink.
    pub rate_limited: Family<SinkLabels, Counter>,
    /// Anomalies that raised no alert (same incident, or within the cooldown).
    pub suppressed: Counter,
    /// Events about old points (replays) that were not alerted on.
    pub stale: Counter,
    /// Open incidents.
    pub open_incidents: Gauge,
}

impl AlertMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "mcpwatch_alert_events_dropped",
            "Alert events dropped because the alerter's queue was full",
            self.events_dropped.clone(),
        );
        r.register(
            "mcpwatch_alert_notifications",
            "Alert notifications by sink, state (firing|resolved) and outcome (sent|failed|dropped)",
            self.notifications.clone(),
        );
        r.register(
            "mcpwatch_alert_retries",
            "Webhook requests retried",
            self.retries.clone(),
        );
        r.register(
            "mcpwatch_alert_rate_limited",
            "Webhook answers 429 (retried after retry_after)",
            self.rate_limited.clone(),
        );
        r.register(
            "mcpwatch_alert_suppressed",
            "Anomalies that raised no alert (same incident, or within the cooldown)",
            self.suppressed.clone(),
        );
        r.register(
            "mcpwatch_alert_stale",
            "Alert events about old points (replays, backfills) not alerted on",
            self.stale.clone(),
        );
        r.register(
            "mcpwatch_alert_open_incidents",
            "Incidents open (firing, not yet resolved)",
            self.open_incidents.clone(),
        );
    }

    fn count(&self, sink: &'static str, n: &Notification, outcome: &'static str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                sink,
                state: if n.is_resolved() {
                    "resolved"
                } else {
                    "firing"
                },
                outcome,
            })
            .inc();
    }
}

/// Constructor arguments for [`Alerter::start`].
pub struct AlerterArgs {
    pub config: AlertConfig,
    pub metrics: AlertMetrics,
    pub shutdown: CancellationToken,
    /// Wall clock, epoch ms (cooldowns, expiry, replay detection).
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

/// One webhook and the queue its task drains.
struct SinkHandle {
    name: &'static str,
    /// Sending half of this sink's bounded queue; the sink's task owns the receiver.
    tx: mpsc::Sender<Arc<Notification>>,
}

/// The alerter: its event queue, its task and one task per webhook.
pub struct Alerter {
    /// Handed out to producers (see [`AlertSender`]).
    sender: AlertSender,
    /// The tracker task, then the sink tasks, owned so [`Alerter::close`] can wait for them.
    tasks: Vec<JoinHandle<()>>,
}

/// How often incidents are checked for expiry.
const TICK: Duration = Duration::from_secs(10);
/// How long the sinks may go on delivering queued notifications after shutdown.
const DRAIN: Duration = Duration::from_secs(5);

impl Alerter {
    /// Starts the tasks. With alerting disabled or no webhook set, the sender is a no-op and no
    /// task runs.
    pub fn start(args: AlerterArgs) -> Result<Alerter, AlertError> {
        let cfg = args.config;
        cfg.validate()?;
        if !cfg.enabled || !cfg.has_sink() {
            return Ok(Alerter {
                sender: AlertSender::disabled(),
                tasks: Vec::new(),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.request_timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.request_timeout_ms.min(5000)))
            .user_agent(concat!("mcpwatch/", env!("CARGO_PKG_VERSION")))
            // a webhook does not redirect, and a redirect would be logged with its URL
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AlertError::Client(e.without_url()))?;
        let policy = cfg.retry_policy();
        let mut tasks = Vec::new();
        let mut sinks = Vec::new();
        let identity = DiscordIdentity {
            bot_name: cfg.discord_bot_name.clone(),
            avatar_url: cfg.discord_bot_avatar.clone(),
        };
        let targets: [(&'static str, &SecretUrl); 2] = [
            ("discord", &cfg.discord_webhook_url),
            ("alertmanager", &cfg.alertmanager_url),
        ];
        for (name, url) in targets {
            if !url.is_set() {
                continue;
            }
            let (tx, rx) = mpsc::channel(cfg.queue_notifications);
            sinks.push(SinkHandle { name, tx });
            tasks.push(tokio::spawn(sink_task(SinkTask {
                name,
                url: url.clone(),
                identity: identity.clone(),
                client: client.clone(),
                policy: policy.clone(),
                rx,
                metrics: args.metrics.clone(),
                shutdown: args.shutdown.clone(),
            })));
        }
        let (tx, rx) = mpsc::channel(cfg.queue_events);
        let sender = AlertSender::new(tx, args.metrics.events_dropped.clone());
        tasks.insert(
            0,
            tokio::spawn(tracker_task(TrackerTask {
                tracker: Tracker::new(cfg.rules()),
                rx,
                sinks,
                metrics: args.metrics,
                shutdown: args.shutdown,
                clock: args.clock,
            })),
        );
        Ok(Alerter { sender, tasks })
    }

    /// A producer handle.
    pub fn sender(&self) -> AlertSender {
        self.sender.clone()
    }

    /// Whether any task runs (a webhook is configured and alerting is on).
    pub fn is_running(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// Waits for the tasks to finish. The event task stops at shutdown (after folding what was
    /// queued) or once every [`AlertSender`] is dropped; each sink then delivers what is queued,
    /// given at most a few seconds after shutdown.
    pub async fn close(self) {
        drop(self.sender);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// What the tracker task owns.
struct TrackerTask {
    tracker: Tracker,
    /// Receiving half of the event queue; producers hold [`AlertSender`]s.
    rx: mpsc::Receiver<AlertEvent>,
    sinks: Vec<SinkHandle>,
    metrics: AlertMetrics,
    shutdown: CancellationToken,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

async fn tracker_task(mut t: TrackerTask) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut counted = tracker::TrackerStats::default();
    loop {
        let notes: Vec<Notification> = tokio::select! {
            ev = t.rx.recv() => match ev {
                Some(ev) => t.tracker.on_event(ev, (t.clock)()).into_iter().collect(),
                None => break,
            },
            _ = tick.tick() => t.tracker.tick((t.clock)()),
            _ = t.shutdown.cancelled() => {
                // what was queued before the stop still counts
                let mut notes = Vec::new();
                while let Ok(ev) = t.rx.try_recv() {
                    notes.extend(t.tracker.on_event(ev, (t.clock)()));
                }
                t.dispatch(notes, &mut counted);
                break;
            }
        };
        t.dispatch(notes, &mut counted);
    }
}

impl TrackerTask {
    /// Updates the figures and hands each notification to every sink's queue (never waits).
    fn dispatch(&self, notes: Vec<Notification>, counted: &mut tracker::TrackerStats) {
        let stats = self.tracker.stats;
        self.metrics
            .suppressed
            .inc_by(stats.suppressed - counted.suppressed);
        self.metrics.stale.inc_by(stats.stale - counted.stale);
        *counted = stats;
        self.metrics
            .open_incidents
            .set(self.tracker.open_incidents() as i64);
        for n in notes {
            let n = Arc::new(n);
            for sink in &self.sinks {
                if sink.tx.try_send(n.clone()).is_err() {
                    self.metrics.count(sink.name, &n, "dropped");
                    tracing::warn!(
                        sink = sink.name,
                        service = %n.anomaly.service_id,
                        metric = %n.anomaly.metric,
                        "alert queue full: notification dropped"
                    );
                }
            }
        }
    }
}

/// What a sink task owns.
struct SinkTask {
    name: &'static str,
    /// The webhook (secret: only handed to reqwest).
    url: SecretUrl,
    identity: DiscordIdentity,
    client: reqwest::Client,
    policy: RetryPolicy,
    /// Receiving half of this sink's notification queue; the tracker task holds the sender.
    rx: mpsc::Receiver<Arc<Notification>>,
    metrics: AlertMetrics,
    shutdown: CancellationToken,
}

async fn sink_task(mut s: SinkTask) {
    // at shutdown, the delivery in flight and what is still queued get DRAIN to go out
    let drain = CancellationToken::new();
    let done = CancellationToken::new();
    let _done_guard = done.clone().drop_guard();
    {
        let (shutdown, drain) = (s.shutdown.clone(), drain.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    tokio::select! {
                        _ = tokio::time::sleep(DRAIN) => drain.cancel(),
                        _ = done.cancelled() => {}
                    }
                }
                _ = done.cancelled() => {}
            }
        });
    }
    // ends when the tracker task, the only sender, has ended
    while let Some(n) = s.rx.recv().await {
        if drain.is_cancelled() {
            s.metrics.count(s.name, &n, "dropped");
            continue;
        }
        let body = match s.name {
            "discord" => discord::payload(&s.identity, &n),
            _ => alertmanager::payload(&n),
        };
        let (result, attempts) = tokio::select! {
            r = deliver(&s.client, &s.url, &body, &s.policy, &drain) => r,
            _ = drain.cancelled() => (
                Err(AlertError::GaveUp { attempts: 0, last: "shutting down".into() }),
                deliver::Attempts::default(),
            ),
        };
        let labels = SinkLabels { sink: s.name };
        s.metrics
            .retries
            .get_or_create(&labels)
            .inc_by(u64::from(attempts.sent.saturating_sub(1)));
        s.metrics
            .rate_limited
            .get_or_create(&labels)
            .inc_by(u64::from(attempts.rate_limited));
        match result {
            Ok(()) => {
                s.metrics.count(s.name, &n, "sent");
                tracing::info!(
                    sink = s.name,
                    service = %n.anomaly.service_id,
                    metric = %n.anomaly.metric,
                    severity = %n.severity,
                    reason = n.reason.as_str(),
                    attempts = attempts.sent,
                    "alert sent"
                );
            }
            Err(e) => {
                s.metrics.count(s.name, &n, "failed");
                tracing::warn!(
                    sink = s.name,
                    service = %n.anomaly.service_id,
                    metric = %n.anomaly.metric,
                    error = %e,
                    "alert not delivered"
                );
            }
        }
    }
}
