//! Rolling forecast error of matured forecasts, per model version.
//!
//! The loop feeds every forecast ([`AccuracyTracker::record_forecast`]) and every closed
//! bucket's actual target value ([`AccuracyTracker::observe_actual`]). As in the offline
//! evaluation, one forecast per service is scored every `origin_every` buckets (default: the
//! horizon, so each bucket is scored once, at lead 1…24); the forecasts in between are not
//! tracked, which keeps memory at most one horizon of points per service. A point matures when
//! its bucket's actual arrives: its absolute error joins the model's rolling window (the last
//! `window_points` points), and so does the seasonal-naive error on the same bucket (the
//! actual one day earlier), giving MASE = MAE / seasonal-naive MAE. Both are exported as gauges.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::metrics::{ForecastMetrics, ModelLabels};

/// One tracked forecast point.
#[derive(Debug, Clone)]
struct Pending {
    bucket_ms: i64,
    value: f64,
    model: Arc<str>,
}

/// Per-service state: the tracked points and the recent actuals (for seasonal naive).
#[derive(Debug, Default)]
struct ServiceTrack {
    /// Start of the last forecast tracked (its first bucket).
    last_origin_ms: Option<i64>,
    /// Points waiting for their actual, ascending by bucket.
    pending: VecDeque<Pending>,
    /// Last `season` actuals `(bucket_ms, value)`, ascending.
    actuals: VecDeque<(i64, f64)>,
}

/// Rolling sums of one model.
#[derive(Debug, Default)]
struct Rolling {
    /// `(|model error|, |seasonal-naive error| if known)` of the last points.
    points: VecDeque<(f64, Option<f64>)>,
    sum_abs: f64,
    sum_naive_model: f64,
    sum_naive: f64,
    naive_points: usize,
    matured: u64,
}

/// A model's rolling accuracy.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelAccuracy {
    /// The model version.
    pub model_version: String,
    /// Points in the rolling window.
    pub points: usize,
    /// Mean absolute error over them (target units).
    pub mae: f64,
    /// MAE / seasonal-naive MAE over the points where seasonal naive was known.
    pub mase: Option<f64>,
    /// Points matured since start.
    pub matured: u64,
}

/// Tracks matured forecasts per service and their error per model. Not thread-safe by itself:
/// the forecasting loop owns it (or wraps it in a mutex).
#[derive(Debug)]
pub struct AccuracyTracker {
    /// Bucket width, ms.
    step_ms: i64,
    /// Buckets per day (seasonal-naive lag).
    season: usize,
    /// Buckets between two tracked forecasts of a service.
    origin_every: i64,
    /// Points per model in the rolling window.
    window_points: usize,
    services: HashMap<Arc<str>, ServiceTrack>,
    models: HashMap<Arc<str>, Rolling>,
    /// Where the gauges go; shared with the rest of the forecaster's metrics.
    metrics: Option<ForecastMetrics>,
}

impl AccuracyTracker {
    /// A tracker for buckets of `bucket_width_secs`, scoring one forecast per service every
    /// `origin_every` buckets, over the last `window_points` points per model.
    pub fn new(
        bucket_width_secs: u64,
        origin_every: usize,
        window_points: usize,
    ) -> AccuracyTracker {
        AccuracyTracker {
            step_ms: bucket_width_secs.max(1) as i64 * 1000,
            season: super::baseline::season_buckets(bucket_width_secs),
            origin_every: origin_every.max(1) as i64,
            window_points: window_points.max(1),
            services: HashMap::new(),
            models: HashMap::new(),
            metrics: None,
        }
    }

    /// Exports MAE/MASE gauges and matured counts into `metrics` from now on.
    pub fn with_metrics(mut self, metrics: ForecastMetrics) -> AccuracyTracker {
        self.metrics = Some(metrics);
        self
    }

    /// Offers a forecast: `values[k]` is for the bucket starting at `first_bucket_ms + k·step`.
    /// Tracked only if it starts `origin_every` buckets or more after the last tracked one of
    /// the service; returns whether it was.
    pub fn record_forecast(
        &mut self,
        service_id: &Arc<str>,
        model_version: &str,
        first_bucket_ms: i64,
        values: &[f64],
    ) -> bool {
        let step = self.step_ms;
        let every = self.origin_every;
        let track = self.services.entry(service_id.clone()).or_default();
        if track
            .last_origin_ms
            .is_some_and(|o| first_bucket_ms < o + every * step)
        {
            return false;
        }
        track.last_origin_ms = Some(first_bucket_ms);
        let model: Arc<str> = match self.models.get_key_value(model_version) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = Arc::from(model_version);
                self.models.insert(k.clone(), Rolling::default());
                k
            }
        };
        // Points of an older tracked forecast for the same buckets are replaced.
        track.pending.retain(|p| p.bucket_ms < first_bucket_ms);
        for (k, v) in values.iter().enumerate() {
            track.pending.push_back(Pending {
                bucket_ms: first_bucket_ms + k as i64 * step,
                value: *v,
                model: model.clone(),
            });
        }
        true
    }

    /// The actual value of a closed bucket: matures the points forecast for it. Returns how
    /// many matured.
    pub fn observe_actual(&mut self, service_id: &str, bucket_ms: i64, actual: f64) -> usize {
        let Some(track) = self.services.get_mut(service_id) else {
            // Keep the actual for seasonal naive even before the first forecast.
            let mut t = ServiceTrack::default();
            t.actuals.push_back((bucket_ms, actual));
            self.services.insert(Arc::from(service_id), t);
            return 0;
        };
        let naive_ms = bucket_ms - self.season as i64 * self.step_ms;
        let naive = track
            .actuals
            .iter()
            .find(|(b, _)| *b == naive_ms)
            .map(|(_, v)| *v);
        track.actuals.push_back((bucket_ms, actual));
        while track.actuals.len() > self.season {
            track.actuals.pop_front();
        }
        // Points for buckets that passed without an actual are dropped unscored.
        while track
            .pending
            .front()
            .is_some_and(|p| p.bucket_ms < bucket_ms)
        {
            track.pending.pop_front();
        }
        let mut matured = 0;
        while track
            .pending
            .front()
            .is_some_and(|p| p.bucket_ms == bucket_ms)
        {
            let p = track.pending.pop_front().expect("front exists");
            let r = self.models.entry(p.model.clone()).or_default();
            let err = (p.value - actual).abs();
            let naive_err = naive.map(|n| (n - actual).abs());
            r.points.push_back((err, naive_err));
            r.sum_abs += err;
            if let Some(ne) = naive_err {
                r.sum_naive += ne;
                r.sum_naive_model += err;
                r.naive_points += 1;
            }
            r.matured += 1;
            while r.points.len() > self.window_points {
                let (e, ne) = r.points.pop_front().expect("non-empty");
                r.sum_abs -= e;
                if let Some(ne) = ne {
                    r.sum_naive -= ne;
                    r.sum_naive_model -= e;
                    r.naive_points -= 1;
                }
            }
            matured += 1;
            if let Some(m) = &self.metrics {
                let labels = ModelLabels {
                    model_version: p.model.to_string(),
                };
                let acc = accuracy_of(&p.model, r);
                m.mae.get_or_create(&labels).set(acc.mae);
                if let Some(mase) = acc.mase {
                    m.mase.get_or_create(&labels).set(mase);
                }
                m.matured_points.get_or_create(&labels).inc();
            }
        }
        matured
    }

    /// Feeds the actuals of a service's recent history that the tracker has not seen yet:
    /// `history` is oldest first and its last value is the bucket starting at
    /// `last_bucket_ms` (as [`ForecastInput`](super::ForecastInput) carries them). Lets the
    /// forecasting loop, which sees each service once per cycle, mature forecasts without a
    /// second feed from the features stage. Returns how many points matured.
    pub fn observe_history(
        &mut self,
        service_id: &str,
        last_bucket_ms: i64,
        history: &[f64],
    ) -> usize {
        let seen = self
            .services
            .get(service_id)
            .and_then(|t| t.actuals.back().map(|(b, _)| *b));
        let n = history.len() as i64;
        let mut matured = 0;
        for (k, v) in history.iter().enumerate() {
            let bucket = last_bucket_ms - (n - 1 - k as i64) * self.step_ms;
            if seen.is_some_and(|s| bucket <= s) {
                continue;
            }
            matured += self.observe_actual(service_id, bucket, *v);
        }
        matured
    }

    /// Forgets a service (evicted or removed).
    pub fn forget(&mut self, service_id: &str) {
        self.services.remove(service_id);
    }

    /// The rolling accuracy of every model seen, sorted by version.
    pub fn accuracy(&self) -> Vec<ModelAccuracy> {
        let mut out: Vec<ModelAccuracy> =
            self.models.iter().map(|(k, r)| accuracy_of(k, r)).collect();
        out.sort_by(|a, b| a.model_version.cmp(&b.model_version));
        out
    }
}

fn accuracy_of(model: &str, r: &Rolling) -> ModelAccuracy {
    let n = r.points.len();
    ModelAccuracy {
        model_version: model.to_string(),
        points: n,
        mae: if n > 0 { r.sum_abs / n as f64 } else { 0.0 },
        mase: (r.naive_points > 0 && r.sum_naive > 0.0).then(|| r.sum_naive_model / r.sum_naive),
        matured: r.matured,
    }
}
