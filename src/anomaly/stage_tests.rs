//! The detection stage end to end on synthetic series (steps, spikes, drifts, seasonality),
//! its bounds (memory per series, number of services, gauge cardinality), and its
//! independence from a hanging webhook.

use std::f64::consts::PI;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use super::*;
use crate::alert::tests::{manual_clock, Receiver, Reply};
use crate::alert::{AlertConfig, AlertMetrics, Alerter, AlerterArgs, SecretUrl};
use crate::cache::{CacheConfig, CacheMetrics, CacheWriter, HotCache, MemoryCache};

const HOUR: i64 = 3_600_000;
/// A Monday 00:00 UTC, a bucket boundary.
const T0: i64 = 1_763_942_400_000;

fn cfg(detector: &str) -> AnomalyConfig {
    AnomalyConfig {
        detector: detector.into(),
        ..AnomalyConfig::default()
    }
}

/// `n` hourly points: a daily cycle (amplitude `amp` around `base`) with Gaussian noise.
fn seasonal(n: usize, base: f64, amp: f64, noise: f64, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            // Box-Muller
            let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos();
            base + amp * (2.0 * PI * (i % 24) as f64 / 24.0).sin() + noise * z
        })
        .collect()
}

fn record(service: &str, i: usize, metric: Metric, value: f64) -> BucketRecord {
    let mut values = [None; 5];
    values[metric.index()] = Some(value);
    BucketRecord::new(service, T0 + i as i64 * HOUR, HOUR, values)
}

/// What one run of the stage produced.
struct Run {
    /// Indices of the anomalous points.
    anomalies: Vec<usize>,
    events: Vec<AlertEvent>,
    metrics: AnomalyMetrics,
}

/// Feeds `series` (one metric of one service) through the stage's task and collects its output.
async fn through_stage(config: AnomalyConfig, metric: Metric, series: &[f64]) -> Run {
    let metrics = AnomalyMetrics::default();
    let (feed, records) = AnomalyFeed::channel(series.len() + 1, &metrics);
    let (alert_tx, mut alert_rx) = mpsc::channel(100_000);
    let (_now, clock) = manual_clock(T0);
    let stage = tokio::spawn(run(StageArgs {
        config,
        resolve_after_ms: 2 * HOUR,
        records,
        sink: AnomalySink::disabled(),
        cache: CacheWriter::disabled(Arc::new(CacheMetrics::new())).sender(),
        keys: KeySpace::new("test"),
        alerts: AlertSender::new(alert_tx, Counter::default()),
        metrics: metrics.clone(),
        clock,
    }));
    for (i, v) in series.iter().enumerate() {
        assert!(feed.offer_record(record("svc", i, metric, *v)));
    }
    drop(feed);
    stage.await.unwrap().unwrap();
    let mut events = Vec::new();
    while let Ok(e) = alert_rx.try_recv() {
        events.push(e);
    }
    let anomalies = events
        .iter()
        .filter_map(|e| match e {
            AlertEvent::Anomaly(a) => {
                assert_eq!(a.metric, metric.as_str());
                assert!((0.0..=1.0).contains(&a.score));
                Some(((a.ts_ms - T0) / HOUR) as usize)
            }
            _ => None,
        })
        .collect();
    assert_eq!(metrics.points.get(), series.len() as u64);
    Run {
        anomalies,
        events,
        metrics,
    }
}

#[tokio::test]
async fn a_spike_is_flagged_once_and_resolves_after_the_hysteresis() {
    let mut s = seasonal(600, 100.0, 30.0, 3.0, 1);
    s[500] *= 3.0;
    for detector in ["mcpwatch", "zscore"] {
        let r = through_stage(cfg(detector), Metric::Requests, &s).await;
        assert!(r.anomalies.contains(&500), "{detector}: {:?}", r.anomalies);
        let false_alarms = r
            .anomalies
            .iter()
            .filter(|&&i| (150..500).contains(&i))
            .count();
        assert!(false_alarms <= 2, "{detector}: {:?}", r.anomalies);
        // status updates follow the spike until 2 h of normality, then stop
        let after: Vec<(i64, bool)> = r
            .events
            .iter()
            .filter_map(|e| match e {
                AlertEvent::Status { ts_ms, normal, .. } if *ts_ms > T0 + 500 * HOUR => {
                    Some(((ts_ms - T0) / HOUR, *normal))
                }
                _ => None,
            })
            .take_while(|(i, _)| *i < 520)
            .collect();
        assert!(!after.is_empty(), "{detector}");
        let last = *after.last().unwrap();
        assert!(last.1, "{detector}: the last status is normal: {after:?}");
        assert!(
            after.len() <= 10,
            "{detector}: updates stop once resolved: {after:?}"
        );
    }
}

#[tokio::test]
async fn a_level_step_is_flagged_when_it_happens() {
    let mut s = seasonal(700, 0.4, 0.05, 0.01, 2);
    for v in &mut s[500..] {
        *v += 0.3;
    }
    for detector in ["mcpwatch", "zscore"] {
        let r = through_stage(cfg(detector), Metric::Cpu, &s).await;
        assert!(
            r.anomalies.iter().any(|&i| (500..=503).contains(&i)),
            "{detector}: {:?}",
            r.anomalies
        );
        let before = r
            .anomalies
            .iter()
            .filter(|&&i| (150..500).contains(&i))
            .count();
        assert!(before <= 2, "{detector}: {:?}", r.anomalies);
    }
}

#[tokio::test]
async fn a_drift_is_flagged_before_it_is_over() {
    let mut s = seasonal(700, 200.0, 20.0, 2.0, 3);
    // from bucket 500, the response time climbs 2 % of its level per bucket
    for (k, v) in s[500..].iter_mut().enumerate() {
        *v += 4.0 * k as f64;
    }
    let r = through_stage(cfg("mcpwatch"), Metric::ResponseTime, &s).await;
    let first = r.anomalies.iter().copied().find(|&i| i >= 500);
    assert!(
        first.is_some_and(|i| i < 600),
        "drift flagged at {first:?}: {:?}",
        r.anomalies
    );
    let before = r
        .anomalies
        .iter()
        .filter(|&&i| (150..500).contains(&i))
        .count();
    assert!(before <= 2, "{:?}", r.anomalies);
}

#[tokio::test]
async fn a_seasonal_series_is_quiet_until_a_value_comes_at_the_wrong_hour() {
    let mut s = seasonal(24 * 40, 100.0, 40.0, 2.0, 4);
    // hour 18 is the trough (sin = -1); give it the peak's value (hour 6), a level the series
    // reaches every day
    let at = 24 * 38 + 18;
    s[at] = 140.0;
    let r = through_stage(cfg("mcpwatch"), Metric::Memory, &s).await;
    // the daily swing itself is never flagged (that would be one alarm a day, 32 here); what
    // remains is the detector's documented noise rate, about 3 per 1000 points early in a series
    let quiet = r
        .anomalies
        .iter()
        .filter(|&&i| (150..at).contains(&i))
        .count();
    assert!(quiet <= 6, "{:?}", r.anomalies);
    assert!(r.anomalies.contains(&at), "{:?}", r.anomalies);
    assert_eq!(
        r.metrics
            .anomalies
            .get_or_create(&AnomalyLabels {
                metric: "memory",
                severity: "critical"
            })
            .get()
            + r.metrics
                .anomalies
                .get_or_create(&AnomalyLabels {
                    metric: "memory",
                    severity: "warning"
                })
                .get(),
        r.anomalies.len() as u64
    );
}

#[test]
fn records_from_the_feature_engine_carry_the_five_series() {
    use crate::features::{FeatureEngine, FeaturesConfig, ManualClock};
    use crate::sample::{Origin, Sample};
    let clock = Arc::new(ManualClock::new(T0));
    let mut engine = FeatureEngine::new(FeaturesConfig::default(), clock.clone()).unwrap();
    let mut closed = Vec::new();
    for h in 0..5 {
        let mut s = Sample::new("fs", T0 + h * HOUR + 1000, Origin::Mcp);
        // hour 3 only reports a CPU gauge (a Prometheus sample would)
        s.cpu = Some(0.25);
        if h != 3 {
            s.memory = Some(0.5);
            s.requests = Some(10.0);
            s.errors = Some(2.0);
            s.response_time_ms = Some(80.0);
        }
        clock.set(T0 + h * HOUR + 2000);
        closed.extend(engine.observe_batch(&[s]));
    }
    clock.set(T0 + 10 * HOUR);
    closed.extend(engine.advance_to(T0 + 10 * HOUR));
    assert!(closed.len() >= 5, "{}", closed.len());
    let r = BucketRecord::from_closed(&closed[0]);
    assert_eq!(r.start_ms, T0);
    assert_eq!(r.value(Metric::Cpu), Some(0.25));
    assert_eq!(r.value(Metric::Memory), Some(0.5));
    assert_eq!(r.value(Metric::Requests), Some(10.0));
    assert_eq!(r.value(Metric::Errors), Some(2.0));
    assert_eq!(r.value(Metric::ResponseTime), Some(80.0));
    // what the engine forward-filled is not shown to the detectors
    let r = BucketRecord::from_closed(&closed[3]);
    assert_eq!(r.start_ms, T0 + 3 * HOUR);
    assert_eq!(r.values, [Some(0.25), None, None, None, None]);
}

#[test]
fn a_full_feed_drops_and_counts_instead_of_waiting() {
    let metrics = AnomalyMetrics::default();
    let (feed, _records) = AnomalyFeed::channel(2, &metrics);
    let accepted = (0..5)
        .filter(|&i| feed.offer_record(record("a", i, Metric::Cpu, 1.0)))
        .count();
    assert_eq!(accepted, 2);
    assert_eq!(metrics.records_dropped.get(), 3);
}

#[test]
fn services_are_bounded_and_idle_ones_evicted() {
    let metrics = AnomalyMetrics::default();
    let mut d = Detection::new(
        AnomalyConfig {
            max_services: 10,
            idle_evict_secs: 3600,
            ..cfg("zscore")
        },
        2 * HOUR,
        metrics.clone(),
    )
    .unwrap();
    let mut out = Outputs::default();
    for s in 0..25 {
        d.observe(
            &record(&format!("s{s}"), 0, Metric::Cpu, 1.0),
            T0 + s,
            &mut out,
        );
    }
    assert_eq!(d.services(), 10);
    assert_eq!(metrics.services_evicted.get(), 15);
    // the survivors are the most recent ones
    assert!(d.score("s24", Metric::Cpu).is_some());
    assert!(d.score("s0", Metric::Cpu).is_none());
    // replays of an older bucket are ignored
    d.observe(&record("s24", 0, Metric::Cpu, 9.0), T0 + 100, &mut out);
    assert_eq!(metrics.records_out_of_order.get(), 1);
    d.observe(
        &record("s24", 1, Metric::Cpu, 1.0),
        T0 + 7_200_000,
        &mut out,
    );
    assert_eq!(d.evict_idle(T0 + 7_200_000 + 10), 9);
    assert_eq!(d.services(), 1);
}

#[test]
fn score_gauges_export_only_the_top_services() {
    let metrics = AnomalyMetrics::default();
    let mut d = Detection::new(
        AnomalyConfig {
            metrics_max_services: 5,
            ..cfg("zscore")
        },
        2 * HOUR,
        metrics.clone(),
    )
    .unwrap();
    let mut out = Outputs::default();
    for s in 0..30 {
        for i in 0..20 {
            // service s spikes by s at the end: the highest scores belong to the last ones
            let v = if i == 19 {
                1.0 + s as f64
            } else {
                1.0 + 0.01 * (i % 3) as f64
            };
            let mut values = [Some(v); 5];
            values[Metric::ResponseTime.index()] = None;
            d.observe(
                &BucketRecord::new(&format!("s{s:02}"), T0 + i * HOUR, HOUR, values),
                T0,
                &mut out,
            );
        }
    }
    d.refresh_gauges();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let text = crate::telemetry::render(&registry);
    let services: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("mcpwatch_anomaly_score{"))
        .filter_map(|l| l.split("service=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(services.len(), 5, "{text}");
    assert!(
        services.contains("s29") && services.contains("s25"),
        "{services:?}"
    );
    let lines = text
        .lines()
        .filter(|l| l.starts_with("mcpwatch_anomaly_score{"))
        .count();
    assert_eq!(lines, 5 * 4, "4 metrics carried values: {text}");
    // s00 ends on an ordinary value
    assert!(
        text.contains("mcpwatch_anomaly_services_anomalous 29"),
        "{text}"
    );
    // scores fall back: the exported set follows (removed labels leave the exposition)
    for s in 0..25 {
        let values = [Some(100.0 + s as f64 * 10.0), None, None, None, None];
        d.observe(
            &BucketRecord::new(&format!("s{s:02}"), T0 + 20 * HOUR, HOUR, values),
            T0,
            &mut out,
        );
    }
    d.refresh_gauges();
    let text = crate::telemetry::render(&registry);
    let exported = text
        .lines()
        .filter(|l| l.starts_with("mcpwatch_anomaly_score{"))
        .filter_map(|l| l.split("service=\"").nth(1)?.split('"').next())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(exported.len(), 5, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_anomalies_reach_the_cache_with_their_coverage() {
    let config = CacheConfig::default();
    let cache_metrics = Arc::new(CacheMetrics::new());
    let memory: Arc<dyn HotCache> = Arc::new(MemoryCache::new(&config, cache_metrics.clone()));
    let writer = CacheWriter::start(memory.clone(), &config, cache_metrics).await;
    let metrics = AnomalyMetrics::default();
    let (feed, records) = AnomalyFeed::channel(1000, &metrics);
    let (_now, clock) = manual_clock(T0);
    let keys = KeySpace::new("anomaly-cache-test");
    let stage = tokio::spawn(run(StageArgs {
        config: AnomalyConfig {
            recent_per_service: 3,
            ..cfg("zscore")
        },
        resolve_after_ms: 2 * HOUR,
        records,
        sink: AnomalySink::disabled(),
        cache: writer.sender(),
        keys: keys.clone(),
        alerts: AlertSender::disabled(),
        metrics,
        clock,
    }));
    // five spikes in a flat series: the cache keeps the newest three
    for i in 0..100usize {
        let v = if i % 20 == 10 {
            50.0
        } else {
            1.0 + 0.01 * (i % 2) as f64
        };
        feed.offer_record(record("svc", i, Metric::Errors, v));
    }
    drop(feed);
    stage.await.unwrap().unwrap();
    let key = keys.key(CACHE_TIER, "svc", CACHE_KIND);
    let deadline = Instant::now() + Duration::from_secs(5);
    let cached: CachedAnomalies = loop {
        if let Some(b) = memory.get(&key).await.unwrap() {
            let c: CachedAnomalies = serde_json::from_slice(&b).unwrap();
            if c.anomalies.len() == 3 && c.anomalies[0].ts_ms == T0 + 90 * HOUR {
                break c;
            }
        }
        assert!(Instant::now() < deadline, "the cache never got the list");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ts: Vec<i64> = cached
        .anomalies
        .iter()
        .map(|a| (a.ts_ms - T0) / HOUR)
        .collect();
    assert_eq!(ts, vec![90, 70, 50], "newest first");
    // complete from just after the newest anomaly it had to let go
    assert_eq!(cached.since_ms, T0 + 30 * HOUR + 1);
    writer.close().await;
}

/// The stage must not slow down when the webhook hangs: it checks every record within a bound
/// far below the webhook's timeout, and the alert queues drop and count what does not fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_keeps_its_pace_while_the_webhook_hangs() {
    let (receiver, base) = Receiver::spawn(vec![Reply::Hang]).await;
    let alert_metrics = AlertMetrics::default();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (now, clock) = manual_clock(T0);
    let alerter = Alerter::start(AlerterArgs {
        config: AlertConfig {
            discord_webhook_url: SecretUrl::new(format!("{base}/api/webhooks/1/t")),
            queue_events: 64,
            queue_notifications: 2,
            request_timeout_ms: 60_000,
            max_event_age_secs: 0,
            ..AlertConfig::default()
        },
        metrics: alert_metrics.clone(),
        shutdown: shutdown.clone(),
        clock: clock.clone(),
    })
    .unwrap();
    const SERVICES: usize = 400;
    const BUCKETS: usize = 50;
    let metrics = AnomalyMetrics::default();
    let (feed, records) = AnomalyFeed::channel(SERVICES * BUCKETS, &metrics);
    let stage = tokio::spawn(run(StageArgs {
        config: cfg("zscore"),
        resolve_after_ms: 2 * HOUR,
        records,
        sink: AnomalySink::disabled(),
        cache: CacheWriter::disabled(Arc::new(CacheMetrics::new())).sender(),
        keys: KeySpace::new("test"),
        alerts: alerter.sender(),
        metrics: metrics.clone(),
        clock,
    }));
    now.store(T0 + BUCKETS as i64 * HOUR, Ordering::Relaxed);
    let started = Instant::now();
    for i in 0..BUCKETS {
        for s in 0..SERVICES {
            // every service spikes at bucket 40: 400 incidents for a webhook that never answers
            let v = if i == 40 {
                100.0
            } else {
                1.0 + 0.01 * ((i + s) % 3) as f64
            };
            assert!(feed.offer_record(record(&format!("s{s}"), i, Metric::Requests, v)));
        }
    }
    let total = (SERVICES * BUCKETS) as u64;
    while metrics.points.get() < total {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "detection stalled at {} of {total} points",
            metrics.points.get()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    receiver.wait_for(1, Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let dropped = alert_metrics
            .notifications
            .get_or_create(&crate::alert::NotificationLabels {
                sink: "discord",
                state: "firing",
                outcome: "dropped",
            })
            .get()
            + alert_metrics.events_dropped.get();
        if dropped > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing was dropped or counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("{total} records checked in {took:?} with a hanging webhook");
    assert_eq!(metrics.records_dropped.get(), 0);
    drop(feed);
    stage.await.unwrap().unwrap();
    shutdown.cancel();
    alerter.close().await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever arrives (noise, NaN, infinities, huge values), every score is in [0, 1], and
    /// the memory per service stays under a bound that does not depend on the series' length.
    #[test]
    fn scores_stay_in_unit_interval_and_memory_per_series_is_bounded(
        values in prop::collection::vec(
            prop_oneof![
                8 => -1e3..1e3f64,
                1 => Just(f64::NAN),
                1 => Just(f64::INFINITY),
                1 => Just(1e300),
                1 => Just(0.0),
            ],
            50..600,
        ),
        zscore in any::<bool>(),
    ) {
        let name = if zscore { "zscore" } else { "mcpwatch" };
        let config = AnomalyConfig { recent_per_service: 4, ..cfg(name) };
        let one = build_detector(name, &config).unwrap().state_bytes();
        let mut d = Detection::new(config, 2 * HOUR, AnomalyMetrics::default()).unwrap();
        let mut out = Outputs::default();
        let mut max_bytes = 0;
        for (i, v) in values.iter().enumerate() {
            let values = [Some(*v), Some(v * 0.5), Some(v.abs()), Some(-v), Some(v + 1.0)];
            d.observe(&BucketRecord::new("svc", T0 + i as i64 * HOUR, HOUR, values), T0, &mut out);
            for m in Metric::ALL {
                let s = d.score("svc", m).unwrap();
                prop_assert!((0.0..=1.0).contains(&s), "{m:?} scored {s}");
            }
            max_bytes = max_bytes.max(d.service_bytes("svc").unwrap());
        }
        for a in &out.anomalies {
            prop_assert!((0.0..=1.0).contains(&a.score));
        }
        let bound = std::mem::size_of::<ServiceState>()
            + 5 * one
            + 8 * (std::mem::size_of::<Anomaly>() + 64);
        prop_assert!(max_bytes <= bound, "{max_bytes} > {bound}");
    }
}

/// History records: hourly points of one metric, `from..to`.
fn history(service: &str, s: &[f64], from: usize, to: usize, metric: Metric) -> Vec<BucketRecord> {
    (from..to)
        .map(|i| record(service, i, metric, s[i]))
        .collect()
}

/// Replayed history warms the detectors silently: after 300 history points a live spike is an
/// anomaly, while the same spike on a cold detector is still inside the 150-point warm-up; and
/// the history itself (an outlier included) yields no anomaly, cached list, score or event.
#[test]
fn history_warms_the_detectors_without_producing_anything() {
    let mut s = seasonal(303, 100.0, 30.0, 3.0, 7);
    s[120] *= 4.0; // an outlier inside the history: learned from, never reported
    s[300] *= 3.0; // the live spike (mcpwatch may confirm it on the point after)
    let metrics = AnomalyMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut warm = Detection::new(cfg("mcpwatch"), 2 * HOUR, metrics.clone()).unwrap();
    let mut out = Outputs::default();
    let hist = history("svc", &s, 0, 300, Metric::Requests);
    warm.take(&FeedItem::History(hist), T0, &mut out);
    assert_eq!(out, Outputs::default(), "history produces nothing");
    assert_eq!(metrics.history_points.get(), 300);
    assert_eq!(
        metrics.points.get(),
        0,
        "history points are not scored points"
    );
    assert!(warm.holds("svc"));
    assert_eq!(warm.score("svc", Metric::Requests), None, "no score yet");
    assert!(warm.cached("svc").unwrap().anomalies.is_empty());
    warm.refresh_gauges();
    let text = crate::telemetry::render(&registry);
    assert!(!text.contains("mcpwatch_anomaly_score{"), "{text}");
    assert!(!text.contains("mcpwatch_anomalies_total{"), "{text}");
    assert!(
        text.contains("mcpwatch_anomaly_history_points_total 300"),
        "{text}"
    );

    // the live points start with the spike: scored by warm detectors
    for (i, &v) in s.iter().enumerate().skip(300) {
        warm.take(
            &FeedItem::Live(record("svc", i, Metric::Requests, v)),
            T0 + 1,
            &mut out,
        );
    }
    assert!(warm.score("svc", Metric::Requests).is_some());
    assert_eq!(out.anomalies.len(), 1, "{:?}", out.anomalies);
    let at = out.anomalies[0].ts_ms;
    assert!((T0 + 300 * HOUR..=T0 + 301 * HOUR).contains(&at), "{at}");
    assert!(out.events.iter().all(|e| e_ts(e) >= T0 + 300 * HOUR));
    assert!(matches!(&out.events[0], AlertEvent::Anomaly(a) if a.ts_ms == at));
    assert!(out.cache_dirty.iter().all(|id| &**id == "svc"));
    assert!(!out.cache_dirty.is_empty());
    // the cached list claims nothing about the (unchecked) history
    let cached = warm.cached("svc").unwrap();
    assert_eq!(cached.since_ms, T0 + 299 * HOUR + 1);
    assert_eq!(cached.anomalies.len(), 1);
    warm.refresh_gauges();
    let text = crate::telemetry::render(&registry);
    assert!(
        text.contains("mcpwatch_anomaly_score{service=\"svc\",metric=\"requests\"}"),
        "{text}"
    );

    // the same spike without history: still warming up, not scored
    let cold_metrics = AnomalyMetrics::default();
    let mut cold = Detection::new(cfg("mcpwatch"), 2 * HOUR, cold_metrics.clone()).unwrap();
    let mut out = Outputs::default();
    for (i, &v) in s.iter().enumerate().skip(250) {
        cold.observe(&record("svc", i, Metric::Requests, v), T0, &mut out);
    }
    assert!(out.anomalies.is_empty(), "{:?}", out.anomalies);
    assert_eq!(cold_metrics.history_points.get(), 0);
}

/// History older than what the stage holds is skipped (the stage already knew the service),
/// without counting as out of order; history newer than it is learned.
#[test]
fn history_behind_the_held_state_is_skipped() {
    let metrics = AnomalyMetrics::default();
    let mut d = Detection::new(cfg("zscore"), 2 * HOUR, metrics.clone()).unwrap();
    let mut out = Outputs::default();
    d.observe(&record("svc", 10, Metric::Cpu, 1.0), T0, &mut out);
    let s = vec![1.0; 20];
    d.take(
        &FeedItem::History(history("svc", &s, 5, 15, Metric::Cpu)),
        T0,
        &mut out,
    );
    assert_eq!(metrics.history_points.get(), 4, "11..15 only");
    assert_eq!(metrics.records_out_of_order.get(), 0);
    // live records behind the history are out of order as before
    d.observe(&record("svc", 14, Metric::Cpu, 1.0), T0, &mut out);
    assert_eq!(metrics.records_out_of_order.get(), 1);
}

/// A history takes one queue slot, and only while half the queue is free (live records keep
/// the rest); what is not queued is counted, never waited for.
#[test]
fn history_keeps_half_the_queue_for_live_records() {
    let metrics = AnomalyMetrics::default();
    let (feed, _records) = AnomalyFeed::channel(4, &metrics);
    let s = vec![1.0; 100];
    assert!(feed.offer_history(history("a", &s, 0, 100, Metric::Cpu)));
    assert!(feed.offer_history(history("b", &s, 0, 100, Metric::Cpu)));
    // half full: a third history is dropped (and counted), live records still fit
    assert!(!feed.offer_history(history("c", &s, 0, 100, Metric::Cpu)));
    assert_eq!(metrics.history_dropped.get(), 100);
    assert!(feed.offer_record(record("a", 100, Metric::Cpu, 1.0)));
    assert!(feed.offer_record(record("b", 100, Metric::Cpu, 1.0)));
    assert!(!feed.offer_record(record("c", 100, Metric::Cpu, 1.0)));
    assert_eq!(metrics.records_dropped.get(), 1);
    assert!(feed.offer_history(Vec::new()), "nothing to offer");
}

/// Through the stage's task: history queued before the live buckets warms the detectors, the
/// feed learns that the stage holds the service, and only the live spike is alerted on and
/// cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_then_live_through_the_stage() {
    let config = CacheConfig::default();
    let cache_metrics = Arc::new(CacheMetrics::new());
    let memory: Arc<dyn HotCache> = Arc::new(MemoryCache::new(&config, cache_metrics.clone()));
    let writer = CacheWriter::start(memory.clone(), &config, cache_metrics).await;
    let mut s = seasonal(310, 100.0, 30.0, 3.0, 7);
    s[120] *= 4.0;
    s[300] *= 3.0;
    let metrics = AnomalyMetrics::default();
    let (feed, records) = AnomalyFeed::channel(64, &metrics);
    let (alert_tx, mut alert_rx) = mpsc::channel(1000);
    let (_now, clock) = manual_clock(T0);
    let keys = KeySpace::new("anomaly-history-test");
    assert!(!feed.holds("svc"));
    assert!(feed.offer_history(history("svc", &s, 0, 300, Metric::Requests)));
    for (i, &v) in s.iter().enumerate().skip(300) {
        assert!(feed.offer_record(record("svc", i, Metric::Requests, v)));
    }
    let stage = tokio::spawn(run(StageArgs {
        config: cfg("mcpwatch"),
        resolve_after_ms: 2 * HOUR,
        records,
        sink: AnomalySink::disabled(),
        cache: writer.sender(),
        keys: keys.clone(),
        alerts: AlertSender::new(alert_tx, Counter::default()),
        metrics: metrics.clone(),
        clock,
    }));
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics.points.get() < 10 {
        assert!(
            Instant::now() < deadline,
            "the stage did not take the records"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(feed.holds("svc"), "the feed sees what the stage holds");
    drop(feed);
    stage.await.unwrap().unwrap();
    assert_eq!(metrics.history_points.get(), 300);
    assert_eq!(metrics.points.get(), 10);
    let mut anomalies = Vec::new();
    while let Ok(e) = alert_rx.try_recv() {
        assert!(
            e_ts(&e) >= T0 + 300 * HOUR,
            "an event for a history point: {e:?}"
        );
        if let AlertEvent::Anomaly(a) = e {
            anomalies.push((a.ts_ms - T0) / HOUR);
        }
    }
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert!((300..=301).contains(&anomalies[0]), "{anomalies:?}");
    let key = keys.key(CACHE_TIER, "svc", CACHE_KIND);
    let deadline = Instant::now() + Duration::from_secs(5);
    let cached: CachedAnomalies = loop {
        if let Some(b) = memory.get(&key).await.unwrap() {
            let c: CachedAnomalies = serde_json::from_slice(&b).unwrap();
            if !c.anomalies.is_empty() {
                break c;
            }
        }
        assert!(Instant::now() < deadline, "the cache never got the list");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(cached.anomalies.len(), 1);
    assert_eq!(cached.anomalies[0].ts_ms, T0 + anomalies[0] * HOUR);
    writer.close().await;
}

fn e_ts(e: &AlertEvent) -> i64 {
    match e {
        AlertEvent::Anomaly(a) | AlertEvent::ForecastAnomaly(a) => a.ts_ms,
        AlertEvent::Status { ts_ms, .. } => *ts_ms,
    }
}
