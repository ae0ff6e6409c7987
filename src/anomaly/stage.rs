//! The streaming detection stage: features → **detection** → store / cache / `/metrics` /
//! alerts.
//!
//! The features stage offers one [`BucketRecord`] per closed bucket through an [`AnomalyFeed`]
//! (a `try_send` on a bounded queue: when this stage falls behind, records are dropped and
//! counted, the features stage never waits). This stage owns one detector per (service,
//! metric) — CPU, memory, requests, errors, response time — and feeds each the bucket's value in
//! time order, so every score is computed from the past only. A score at or above the alert
//! threshold is an [`Anomaly`]: it goes to PostgreSQL through the batching [`AnomalySink`], to
//! the hot cache (the service's recent anomalies), and to the alerter, which also receives the
//! series' status while an incident may be open (for hysteresis). Everything it sends is
//! `try_send`: no output can stall detection.
//!
//! Memory is bounded twice: per series by the detector's fixed state
//! ([`Detector::state_bytes`]), and in series by `max_services` (the least recently seen
//! service is evicted to admit a new one) and `idle_evict_secs`.
//!
//! Detector state lives in memory only. So that a restart (or a rebalance handing this replica
//! services it did not hold) is not followed by a warm-up blind spot of `warmup` buckets, the
//! features stage replays a returning service's recent samples from PostgreSQL and offers the
//! buckets that replay closes as **history** ([`AnomalyFeed::offer_history`]): the detectors
//! learn from them, but a history point is never scored into an anomaly, a cached list, a score
//! gauge or an alert event (`mcpwatch_anomaly_history_points_total` counts them). The stage
//! publishes which services it holds ([`AnomalyFeed::holds`]) so the features stage knows which
//! ones need that replay.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicU64;
use tokio::sync::mpsc;

use crate::alert::{AlertEvent, AlertSender, Anomaly, AnomalySource, Severity};
use crate::anomaly::record::{BucketRecord, Metric};
use crate::anomaly::sink::AnomalySink;
use crate::anomaly::{build_detector, AnomalyConfig, AnomalyError, Detector};
use crate::cache::{CacheSender, KeySpace, Tier};
use crate::features::ClosedBucket;

#[cfg(test)]
#[path = "stage_tests.rs"]
mod tests;

/// The cache `kind` of a service's recent anomalies ([`CachedAnomalies`] JSON, hourly tier).
pub const CACHE_KIND: &str = "anomalies";
/// The cache tier of [`CACHE_KIND`].
pub const CACHE_TIER: Tier = Tier::Hourly;

/// A service's recent anomalies as cached: complete for every point at or after `since_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAnomalies {
    /// Every anomaly of the service at or after this time (series time) is in `anomalies`.
    pub since_ms: i64,
    /// Newest first.
    pub anomalies: Vec<Anomaly>,
}

/// Labels of a per-service score gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScoreLabels {
    pub service: String,
    pub metric: &'static str,
}

/// Labels of the anomaly counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnomalyLabels {
    pub metric: &'static str,
    pub severity: &'static str,
}

/// The stage's figures. Cheap to clone.
#[derive(Clone, Default)]
pub struct AnomalyMetrics {
    /// Latest score per (service, metric), for at most `metrics_max_services` services: the
    /// ones with the highest current score.
    pub score: Family<ScoreLabels, Gauge<f64, AtomicU64>>,
    /// Highest latest score over every service and metric.
    pub max_score: Gauge<f64, AtomicU64>,
    /// Services whose latest point scored at or above the alert threshold on some metric.
    pub services_anomalous: Gauge,
    /// Points scored.
    pub points: Counter,
    /// Anomalies found, by metric and severity.
    pub anomalies: Family<AnomalyLabels, Counter>,
    /// Closed-bucket records dropped because this stage's queue was full.
    pub records_dropped: Counter,
    /// Records older than the service's last one (replays), ignored.
    pub records_out_of_order: Counter,
    /// Services with detector state.
    pub services: Gauge,
    /// Services evicted (idle, or to admit a new one beyond `max_services`).
    pub services_evicted: Counter,
    /// Bytes of detector state.
    pub state_bytes: Gauge,
    /// Anomalies written to PostgreSQL.
    pub stored: Counter,
    /// Anomalies dropped on the way to PostgreSQL (queue full, or the write failed for good).
    pub store_dropped: Counter,
    /// Failed anomaly writes (each is retried before its rows are dropped).
    pub store_errors: Counter,
    /// History points (replayed buckets of a returning service) the detectors learned from.
    pub history_points: Counter,
    /// History buckets not offered because the queue was at least half full (kept for live
    /// records), or the stage was gone.
    pub history_dropped: Counter,
}

impl AnomalyMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "mcpwatch_anomaly_score",
            "Latest anomaly score (0..1) per service and metric, for the services with the highest current score (at most anomaly.metrics_max_services)",
            self.score.clone(),
        );
        r.register(
            "mcpwatch_anomaly_max_score",
            "Highest latest anomaly score over every service and metric",
            self.max_score.clone(),
        );
        r.register(
            "mcpwatch_anomaly_services_anomalous",
            "Services whose latest point is anomalous on some metric",
            self.services_anomalous.clone(),
        );
        r.register(
            "mcpwatch_anomaly_points",
            "Points scored by the anomaly detectors",
            self.points.clone(),
        );
        r.register(
            "mcpwatch_anomalies",
            "Anomalies found, by metric and severity",
            self.anomalies.clone(),
        );
        r.register(
            "mcpwatch_anomaly_records_dropped",
            "Closed buckets not checked because the detection queue was full",
            self.records_dropped.clone(),
        );
        r.register(
            "mcpwatch_anomaly_records_out_of_order",
            "Closed buckets older than the service's last one, ignored",
            self.records_out_of_order.clone(),
        );
        r.register(
            "mcpwatch_anomaly_services",
            "Services with detector state",
            self.services.clone(),
        );
        r.register(
            "mcpwatch_anomaly_services_evicted",
            "Services whose detector state was dropped (idle, or over anomaly.max_services)",
            self.services_evicted.clone(),
        );
        r.register_with_unit(
            "mcpwatch_anomaly_state",
            "Memory held by the anomaly detectors",
            Unit::Bytes,
            self.state_bytes.clone(),
        );
        r.register(
            "mcpwatch_anomalies_stored",
            "Anomalies written to PostgreSQL",
            self.stored.clone(),
        );
        r.register(
            "mcpwatch_anomalies_store_dropped",
            "Anomalies dropped on the way to PostgreSQL (queue full or write failed)",
            self.store_dropped.clone(),
        );
        r.register(
            "mcpwatch_anomalies_store_errors",
            "Failed anomaly writes to PostgreSQL",
            self.store_errors.clone(),
        );
        r.register(
            "mcpwatch_anomaly_history_points",
            "Replayed history points the detectors learned from (never scored or alerted on)",
            self.history_points.clone(),
        );
        r.register(
            "mcpwatch_anomaly_history_dropped",
            "Replayed history buckets dropped because the detection queue was at least half full",
            self.history_dropped.clone(),
        );
    }
}

/// One entry of the stage's queue.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    /// A live closed bucket: scored, and what it scores is stored, cached, exported, alerted.
    Live(BucketRecord),
    /// One service's replayed buckets, oldest first: learned from, never scored into output.
    /// A whole replay takes one queue slot.
    History(Vec<BucketRecord>),
}

/// The services the stage holds detector state for, as the features stage sees them.
pub type HeldServices = Arc<RwLock<HashSet<Arc<str>>>>;

/// The receiving end of an [`AnomalyFeed`], for [`run`].
pub struct FeedReceiver {
    rx: mpsc::Receiver<FeedItem>,
    held: HeldServices,
}

/// The features stage's handle: offers closed buckets without waiting.
#[derive(Clone)]
pub struct AnomalyFeed {
    /// Sending half of the stage's bounded queue; the stage's task owns the receiver.
    tx: mpsc::Sender<FeedItem>,
    /// Counts records dropped at the door (`mcpwatch_anomaly_records_dropped_total`).
    dropped: Counter,
    /// Counts history buckets dropped at the door (`mcpwatch_anomaly_history_dropped_total`).
    history_dropped: Counter,
    /// Written by the stage, read by [`holds`](Self::holds).
    held: HeldServices,
}

impl AnomalyFeed {
    /// A feed and the receiving end for [`run`], holding `capacity` items.
    pub fn channel(capacity: usize, metrics: &AnomalyMetrics) -> (AnomalyFeed, FeedReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let held = HeldServices::default();
        (
            AnomalyFeed {
                tx,
                dropped: metrics.records_dropped.clone(),
                history_dropped: metrics.history_dropped.clone(),
                held: held.clone(),
            },
            FeedReceiver { rx, held },
        )
    }

    /// Offers one record; `false` when it was dropped (queue full or stage gone; counted).
    pub fn offer_record(&self, record: BucketRecord) -> bool {
        if self.tx.try_send(FeedItem::Live(record)).is_ok() {
            true
        } else {
            self.dropped.inc();
            false
        }
    }

    /// Offers the record of a closed bucket.
    pub fn offer(&self, bucket: &ClosedBucket) -> bool {
        self.offer_record(BucketRecord::from_closed(bucket))
    }

    /// Offers one service's replayed closed buckets (oldest first) for the detectors to learn
    /// from, in one queue slot. Never waits: a history is only queued while at least half the
    /// queue is free, so a burst of replays (a restart, a rebalance) cannot crowd out live
    /// records; otherwise it is dropped and its buckets counted in
    /// `mcpwatch_anomaly_history_dropped_total`, and that service's detectors learn from its
    /// live buckets instead. Queued before the service's live buckets (the caller offers it
    /// first, from the same task), it reaches the stage before them; a history older than what
    /// the stage already holds for a series is skipped there. `false` when dropped.
    pub fn offer_history(&self, records: Vec<BucketRecord>) -> bool {
        if records.is_empty() {
            return true;
        }
        let n = records.len() as u64;
        let room = self.tx.capacity() > self.tx.max_capacity() / 2;
        if room && self.tx.try_send(FeedItem::History(records)).is_ok() {
            true
        } else {
            self.history_dropped.inc_by(n);
            false
        }
    }

    /// Whether the stage holds detector state for `service` (as of the items it has taken off
    /// the queue; an eviction shows here at once, a service still queued does not yet).
    pub fn holds(&self, service: &str) -> bool {
        self.held
            .read()
            .map(|h| h.contains(service))
            .unwrap_or(false)
    }
}

/// One series' detector and alert bookkeeping.
struct Series {
    detector: Box<dyn Detector>,
    /// Series time of the last abnormal point while the alerter may hold an incident open for
    /// this series (status updates are sent until it has seen `resolve_after` of normality).
    watching: Option<i64>,
    /// Score of the latest live point.
    score: f32,
    /// Whether a live point was scored (a series only warmed by history exports no score).
    live: bool,
}

impl Series {
    /// The series in `slot`, started with a fresh detector if there is none yet.
    fn get_or_new<'a>(slot: &'a mut Option<Series>, cfg: &AnomalyConfig) -> &'a mut Series {
        slot.get_or_insert_with(|| Series {
            detector: build_detector(&cfg.detector, cfg).expect("detector name validated"),
            watching: None,
            score: 0.0,
            live: false,
        })
    }
}

/// Everything the stage keeps about one service.
struct ServiceState {
    series: [Option<Series>; 5],
    /// Start of the newest bucket seen (older records are replays).
    last_start_ms: i64,
    /// Wall time that bucket arrived (idle eviction, least-recently-seen eviction).
    last_seen_wall: i64,
    /// The cached list holds every anomaly at or after this series time.
    since_ms: i64,
    /// Newest last, at most `recent_per_service`.
    recent: VecDeque<Anomaly>,
    /// Whether the cached list was offered once (a service warmed by history only is not
    /// cached until its first live bucket).
    announced: bool,
}

impl ServiceState {
    fn max_score(&self) -> f32 {
        self.series
            .iter()
            .flatten()
            .map(|s| s.score)
            .fold(0.0, f32::max)
    }

    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .series
                .iter()
                .flatten()
                .map(|s| s.detector.state_bytes())
                .sum::<usize>()
            + self.recent.capacity() * std::mem::size_of::<Anomaly>()
            + self
                .recent
                .iter()
                .map(|a| {
                    a.service_id.capacity()
                        + a.metric.capacity()
                        + a.detector.capacity()
                        + a.message.as_ref().map_or(0, String::capacity)
                })
                .sum::<usize>()
    }

    fn cached(&self) -> CachedAnomalies {
        CachedAnomalies {
            since_ms: self.since_ms,
            anomalies: self.recent.iter().rev().cloned().collect(),
        }
    }
}

/// What one record produced.
#[derive(Debug, Default, PartialEq)]
pub struct Outputs {
    /// New anomalies (to store, cache and alert on).
    pub anomalies: Vec<Anomaly>,
    /// Events for the alerter (anomalies and status updates).
    pub events: Vec<AlertEvent>,
    /// Services whose cached anomaly list changed (or was created).
    pub cache_dirty: Vec<Arc<str>>,
}

/// The detectors of every service, and the rules that turn scores into anomalies. Pure state
/// (no I/O): [`run`] drives it; tests drive it directly.
pub struct Detection {
    cfg: AnomalyConfig,
    metrics_set: Vec<Metric>,
    /// Score at or above which a point is an anomaly.
    threshold: f64,
    resolve_after_ms: i64,
    services: HashMap<Arc<str>, ServiceState>,
    /// The keys of `services`, shared with the [`AnomalyFeed`] ([`AnomalyFeed::holds`]).
    held: HeldServices,
    /// Services currently exported with score gauges.
    exported: HashSet<Arc<str>>,
    metrics: AnomalyMetrics,
}

impl Detection {
    /// `resolve_after_ms` is the alerter's hysteresis (status updates are sent that long).
    pub fn new(
        cfg: AnomalyConfig,
        resolve_after_ms: i64,
        metrics: AnomalyMetrics,
    ) -> Result<Detection, AnomalyError> {
        cfg.validate()?;
        let probe = build_detector(&cfg.detector, &cfg)?;
        let threshold = cfg
            .alert_threshold
            .unwrap_or_else(|| probe.alert_threshold());
        Ok(Detection {
            metrics_set: cfg.metric_set(),
            threshold,
            resolve_after_ms,
            services: HashMap::new(),
            held: HeldServices::default(),
            exported: HashSet::new(),
            metrics,
            cfg,
        })
    }

    /// Publishes the services held into `held` (the feed's view) from now on.
    pub fn with_held(mut self, held: HeldServices) -> Detection {
        if let Ok(mut h) = held.write() {
            h.clear();
            h.extend(self.services.keys().cloned());
        }
        self.held = held;
        self
    }

    fn held_insert(&self, id: &Arc<str>) {
        if let Ok(mut h) = self.held.write() {
            h.insert(id.clone());
        }
    }

    fn held_remove(&self, id: &str) {
        if let Ok(mut h) = self.held.write() {
            h.remove(id);
        }
    }

    /// The score from which a point is an anomaly.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    pub fn services(&self) -> usize {
        self.services.len()
    }

    /// Bytes of state held for `service` (detectors and recent anomalies).
    pub fn service_bytes(&self, service: &str) -> Option<usize> {
        self.services.get(service).map(ServiceState::bytes)
    }

    /// Bytes of state held for every service.
    pub fn state_bytes(&self) -> usize {
        self.services.values().map(ServiceState::bytes).sum()
    }

    /// The cached form of `service`'s recent anomalies.
    pub fn cached(&self, service: &str) -> Option<CachedAnomalies> {
        self.services.get(service).map(ServiceState::cached)
    }

    /// Latest score of (service, metric), once a live point was scored.
    pub fn score(&self, service: &str, metric: Metric) -> Option<f64> {
        let s = self.services.get(service)?.series[metric.index()].as_ref()?;
        s.live.then_some(f64::from(s.score))
    }

    /// Whether detector state is held for `service`.
    pub fn holds(&self, service: &str) -> bool {
        self.services.contains_key(service)
    }

    /// Takes one queue item at wall time `now`, appending what it produced to `out`.
    pub fn take(&mut self, item: &FeedItem, now: i64, out: &mut Outputs) {
        match item {
            FeedItem::Live(rec) => self.observe(rec, now, out),
            FeedItem::History(recs) => {
                for rec in recs {
                    self.learn(rec, now);
                }
            }
        }
    }

    /// The state of `rec`'s service, created (evicting another beyond `max_services`) if new.
    fn state_for(&mut self, rec: &BucketRecord, now: i64) -> &mut ServiceState {
        if !self.services.contains_key(&rec.service_id) {
            if self.services.len() >= self.cfg.max_services {
                self.evict_least_recent();
            }
            self.services.insert(
                rec.service_id.clone(),
                ServiceState {
                    series: Default::default(),
                    last_start_ms: i64::MIN,
                    last_seen_wall: now,
                    since_ms: rec.start_ms,
                    recent: VecDeque::new(),
                    announced: false,
                },
            );
            self.held_insert(&rec.service_id);
        }
        self.services
            .get_mut(&rec.service_id)
            .expect("inserted above")
    }

    /// Feeds one history point (a replayed bucket) to the detectors to learn from, at wall time
    /// `now`. It produces nothing: no anomaly, no cached list, no score, no alert event. A
    /// point not newer than the service's last one is skipped (the stage already held the
    /// service; not counted as out of order). Returns the values learned.
    pub fn learn(&mut self, rec: &BucketRecord, now: i64) -> usize {
        self.state_for(rec, now);
        let st = self
            .services
            .get_mut(&rec.service_id)
            .expect("inserted above");
        if rec.start_ms <= st.last_start_ms {
            return 0;
        }
        st.last_start_ms = rec.start_ms;
        st.last_seen_wall = now;
        // the cached list cannot claim to be complete over points that were not checked
        st.since_ms = st.since_ms.max(rec.start_ms.saturating_add(1));
        let mut learned = 0;
        for &m in &self.metrics_set {
            let Some(value) = rec.value(m) else {
                continue;
            };
            let series = Series::get_or_new(&mut st.series[m.index()], &self.cfg);
            series.detector.update(rec.start_ms, value);
            learned += 1;
        }
        self.metrics.history_points.inc_by(learned as u64);
        learned
    }

    /// Scores one closed bucket at wall time `now`, appending what it produced to `out`.
    pub fn observe(&mut self, rec: &BucketRecord, now: i64, out: &mut Outputs) {
        let threshold = self.threshold;
        let resolve_after_ms = self.resolve_after_ms;
        self.state_for(rec, now);
        let st = self
            .services
            .get_mut(&rec.service_id)
            .expect("inserted above");
        if !st.announced {
            st.announced = true;
            out.cache_dirty.push(rec.service_id.clone());
        }
        if rec.start_ms <= st.last_start_ms {
            self.metrics.records_out_of_order.inc();
            return;
        }
        st.last_start_ms = rec.start_ms;
        st.last_seen_wall = now;
        for &m in &self.metrics_set {
            let Some(value) = rec.value(m) else {
                continue;
            };
            let series = Series::get_or_new(&mut st.series[m.index()], &self.cfg);
            let expected = series.detector.expected(rec.start_ms);
            let score = series.detector.update(rec.start_ms, value);
            self.metrics.points.inc();
            series.score = score as f32;
            series.live = true;
            if score >= threshold {
                let severity = Severity::from_score(score, self.cfg.critical_score);
                let a = Anomaly {
                    service_id: rec.service_id.to_string(),
                    metric: m.as_str().to_string(),
                    source: AnomalySource::Stream,
                    ts_ms: rec.start_ms,
                    score,
                    value,
                    expected: expected.filter(|e| e.is_finite()),
                    severity,
                    detector: self.cfg.detector.clone(),
                    message: None,
                };
                self.metrics
                    .anomalies
                    .get_or_create(&AnomalyLabels {
                        metric: m.as_str(),
                        severity: severity.as_str(),
                    })
                    .inc();
                series.watching = Some(rec.start_ms);
                if self.cfg.recent_per_service > 0 {
                    while st.recent.len() >= self.cfg.recent_per_service {
                        if let Some(old) = st.recent.pop_front() {
                            st.since_ms = st.since_ms.max(old.ts_ms + 1);
                        }
                    }
                    st.recent.push_back(a.clone());
                    out.cache_dirty.push(rec.service_id.clone());
                }
                out.events.push(AlertEvent::Anomaly(a.clone()));
                out.anomalies.push(a);
            } else if let Some(last_abnormal) = series.watching {
                let raw = series.detector.raw_score().unwrap_or(score);
                let normal = raw < threshold;
                if normal {
                    if rec.start_ms - last_abnormal >= resolve_after_ms {
                        series.watching = None;
                    }
                } else {
                    series.watching = Some(rec.start_ms);
                }
                out.events.push(AlertEvent::Status {
                    service_id: rec.service_id.to_string(),
                    metric: m.as_str().to_string(),
                    source: AnomalySource::Stream,
                    ts_ms: rec.start_ms,
                    normal,
                });
            }
        }
    }

    fn evict_least_recent(&mut self) {
        let oldest = self
            .services
            .iter()
            .min_by_key(|(id, s)| (s.last_seen_wall, s.last_start_ms, Arc::clone(id)))
            .map(|(id, _)| id.clone());
        if let Some(id) = oldest {
            self.services.remove(&id);
            self.held_remove(&id);
            self.metrics.services_evicted.inc();
        }
    }

    /// Drops the state of services that sent nothing for `idle_evict_secs`.
    pub fn evict_idle(&mut self, now: i64) -> usize {
        let horizon = now - (self.cfg.idle_evict_secs as i64).saturating_mul(1000);
        let before = self.services.len();
        self.services.retain(|_, s| s.last_seen_wall > horizon);
        let evicted = before - self.services.len();
        if evicted > 0 {
            if let Ok(mut h) = self.held.write() {
                h.retain(|id| self.services.contains_key(id));
            }
        }
        self.metrics.services_evicted.inc_by(evicted as u64);
        evicted
    }

    /// Refreshes the gauges: per-service scores for the `metrics_max_services` services with
    /// the highest current score (ties by name), the maximum, the anomalous count, the sizes.
    pub fn refresh_gauges(&mut self) {
        let n = self.cfg.metrics_max_services;
        let mut ranked: Vec<(f32, &Arc<str>)> = self
            .services
            .iter()
            .map(|(id, s)| (s.max_score(), id))
            .collect();
        let anomalous = ranked
            .iter()
            .filter(|(s, _)| f64::from(*s) >= self.threshold)
            .count();
        let max = ranked.iter().map(|(s, _)| *s).fold(0.0, f32::max);
        if ranked.len() > n {
            // ranked.len() > n, so n - 1 (or 0) is a valid index
            ranked.select_nth_unstable_by(n.saturating_sub(1), |a, b| {
                b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1))
            });
            ranked.truncate(n);
        }
        let keep: HashSet<Arc<str>> = ranked.iter().map(|(_, id)| Arc::clone(id)).collect();
        for gone in self.exported.difference(&keep) {
            for m in Metric::ALL {
                self.metrics.score.remove(&ScoreLabels {
                    service: gone.to_string(),
                    metric: m.as_str(),
                });
            }
        }
        for id in &keep {
            let st = &self.services[id];
            for m in Metric::ALL {
                if let Some(s) = st.series[m.index()].as_ref().filter(|s| s.live) {
                    self.metrics
                        .score
                        .get_or_create(&ScoreLabels {
                            service: id.to_string(),
                            metric: m.as_str(),
                        })
                        .set(f64::from(s.score));
                }
            }
        }
        self.exported = keep;
        self.metrics.max_score.set(f64::from(max));
        self.metrics.services_anomalous.set(anomalous as i64);
        self.metrics.services.set(self.services.len() as i64);
        self.metrics.state_bytes.set(self.state_bytes() as i64);
    }
}

/// Constructor arguments for [`run`].
pub struct StageArgs {
    pub config: AnomalyConfig,
    /// The alerter's hysteresis, so status updates are sent for as long as it needs them.
    pub resolve_after_ms: i64,
    /// Closed-bucket records (live and history) from the features stage
    /// ([`AnomalyFeed::channel`]).
    pub records: FeedReceiver,
    /// Anomalies to PostgreSQL (batched off this task; never waits).
    pub sink: AnomalySink,
    /// Each service's recent anomalies to the cache (best effort; never waits).
    pub cache: CacheSender,
    pub keys: KeySpace,
    /// Events to the alerter (never waits; a disabled sender when alerting is off).
    pub alerts: AlertSender,
    pub metrics: AnomalyMetrics,
    /// Wall clock, epoch ms.
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

/// How often gauges are refreshed and idle services evicted.
const TICK: Duration = Duration::from_secs(10);

/// Checks records until the features stage closes the feed (it does when it stops), then
/// returns: every record handed over before the stop is still checked.
pub async fn run(mut args: StageArgs) -> Result<(), AnomalyError> {
    let mut detection = Detection::new(
        args.config.clone(),
        args.resolve_after_ms,
        args.metrics.clone(),
    )?
    .with_held(args.records.held.clone());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Outputs::default();
    loop {
        tokio::select! {
            item = args.records.rx.recv() => match item {
                Some(item) => {
                    detection.take(&item, (args.clock)(), &mut out);
                    publish(&args, &detection, &mut out);
                }
                None => break,
            },
            _ = tick.tick() => {
                detection.evict_idle((args.clock)());
                detection.refresh_gauges();
            }
        }
    }
    detection.refresh_gauges();
    Ok(())
}

/// Hands one record's outputs on, without waiting on anyone.
fn publish(args: &StageArgs, detection: &Detection, out: &mut Outputs) {
    for a in out.anomalies.drain(..) {
        args.sink.offer(a);
    }
    for e in out.events.drain(..) {
        args.alerts.send(e);
    }
    out.cache_dirty.dedup();
    for id in out.cache_dirty.drain(..) {
        if let Some(c) = detection.cached(&id) {
            if let Ok(json) = serde_json::to_vec(&c) {
                args.cache
                    .offer(args.keys.entry(CACHE_TIER, &id, CACHE_KIND, json));
            }
        }
    }
}
