//! Policy post-processing of forecasts (SPEC §6, the seed's `app/core/policy.py`): the last
//! step before a forecast becomes a capacity plan (`POST /plans`). It applies the request's
//! weight, clamps (no negatives, extreme values limited, 0..1 for normalised metrics),
//! smooths abrupt jumps, and checks the result against the service's own history
//! (z-score, [`ANOMALY_Z`]) so an implausible forecast is flagged to the alerter.
//!
//! The steps, in order, on a series `v` of forecast values:
//! 1. **weight**: `v[i] · weight`; a non-finite value becomes 0.
//! 2. **clamp**: negatives become 0; a normalised metric (cpu, memory: fractions) is capped
//!    at 1; every value is capped at [`PolicyConfig::max_value`].
//! 3. **extreme values**: winsorised at `Q3 + k·max(IQR, 0.1·median)` of the series itself
//!    (`k` = [`PolicyConfig::iqr_k`], 3 as in the training script's IQR rule; the floor on the
//!    spread keeps a flat series with one spike from being capped at the flat level ± 0).
//! 4. **smoothing**: walking forward, a step larger than
//!    `max_jump · max(previous value, median)` is cut to that size (a jump of more than 50 %
//!    by default). Smoothing only moves a value towards its predecessor, so it keeps every
//!    bound of steps 2–3.

use serde::{Deserialize, Serialize};

/// The seed's z-score threshold for an anomalous forecast (`ANOMALY_Z`).
pub const ANOMALY_Z: f64 = 3.0;

/// Fewest history points an anomaly check needs; with fewer, no verdict.
pub const MIN_HISTORY_POINTS: usize = 8;

/// Tuning of [`apply`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// Hard ceiling on any value (counts); normalised metrics are capped at 1 regardless.
    pub max_value: f64,
    /// Largest step between consecutive values, as a share of `max(previous, median)`.
    pub max_jump: f64,
    /// Winsorising factor on the series' interquartile range.
    pub iqr_k: f64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            max_value: 1e9,
            max_jump: 0.5,
            iqr_k: 3.0,
        }
    }
}

/// What kind of quantity a series is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// A count or rate (events per bucket): unbounded above.
    Count,
    /// A fraction (cpu, memory): kept within 0..1.
    Normalised,
}

/// The processed series and what the policy did to it.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyOutcome {
    /// The processed series, same length as the input.
    pub values: Vec<f64>,
    /// Values changed by the clamps or the winsorising (step 2–3).
    pub clamped: usize,
    /// Values changed by the smoothing (step 4).
    pub smoothed: usize,
    /// The median after clamping, the smoothing's reference level.
    pub level: f64,
}

/// Applies weight, clamps, winsorising and smoothing (see the module doc). `weight` must be
/// finite and > 0 (the API validates it); anything else is treated as 1.
pub fn apply(values: &[f64], weight: f64, scale: Scale, config: &PolicyConfig) -> PolicyOutcome {
    let weight = if weight.is_finite() && weight > 0.0 {
        weight
    } else {
        1.0
    };
    let ceiling = match scale {
        Scale::Count => config.max_value.max(0.0),
        Scale::Normalised => 1.0_f64.min(config.max_value.max(0.0)),
    };
    let mut clamped = 0;
    let mut out: Vec<f64> = values
        .iter()
        .map(|&x| {
            let v = x * weight;
            let c = if v.is_finite() {
                v.clamp(0.0, ceiling)
            } else {
                0.0
            };
            if c != v {
                clamped += 1;
            }
            c
        })
        .collect();
    if out.is_empty() {
        return PolicyOutcome {
            values: out,
            clamped,
            smoothed: 0,
            level: 0.0,
        };
    }
    let mut sorted = out.clone();
    sorted.sort_by(f64::total_cmp);
    let q1 = quantile(&sorted, 0.25);
    let median = quantile(&sorted, 0.5);
    let q3 = quantile(&sorted, 0.75);
    let spread = (q3 - q1).max(0.1 * median);
    let cap = q3 + config.iqr_k.max(0.0) * spread;
    for v in &mut out {
        if *v > cap {
            *v = cap;
            clamped += 1;
        }
    }
    let level = median.min(cap);
    let jump = config.max_jump.max(0.0);
    let mut smoothed = 0;
    for i in 1..out.len() {
        let prev = out[i - 1];
        let limit = jump * prev.max(level);
        let v = out[i];
        let s = v.clamp(prev - limit, prev + limit);
        if s != v {
            out[i] = s;
            smoothed += 1;
        }
    }
    PolicyOutcome {
        values: out,
        clamped,
        smoothed,
        level,
    }
}

/// Linear-interpolated quantile of a sorted, non-empty slice.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// How far a forecast strays from the service's recent history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZScore {
    /// Largest `|value − mean| / std` over the forecast.
    pub z: f64,
    /// Index of the forecast value that reached it.
    pub at: usize,
    /// Mean of the finite history points.
    pub history_mean: f64,
    /// The standard deviation used (floored at 1 % of |mean|, so a flat history does not turn
    /// a tiny wobble into an infinite score).
    pub history_std: f64,
    /// Finite history points used.
    pub history_points: usize,
}

/// The z-score of `forecast` against `history` (both in the same units); `None` with fewer
/// than [`MIN_HISTORY_POINTS`] finite history points or an empty forecast.
pub fn forecast_zscore(history: &[f64], forecast: &[f64]) -> Option<ZScore> {
    let h: Vec<f64> = history.iter().copied().filter(|v| v.is_finite()).collect();
    if h.len() < MIN_HISTORY_POINTS || forecast.is_empty() {
        return None;
    }
    let n = h.len() as f64;
    let mean = h.iter().sum::<f64>() / n;
    let var = h.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt().max(0.01 * mean.abs()).max(1e-6);
    let (at, z) = forecast
        .iter()
        .map(|v| {
            if v.is_finite() {
                (v - mean).abs() / std
            } else {
                0.0
            }
        })
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(ZScore {
        z,
        at,
        history_mean: mean,
        history_std: std,
        history_points: h.len(),
    })
}

/// A forecast that strays more than the threshold from its service's history: sent to the
/// alerter (best effort, never blocking the request) and recorded with the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastAnomaly {
    /// The service planned for.
    pub service_id: String,
    /// The plan's metric (`total_events`, `cpu_usage`, …).
    pub metric_name: String,
    /// The model that produced the forecast.
    pub model_version: String,
    /// Who asked (API key id), when the request was authenticated.
    pub key_id: Option<String>,
    /// The highest z-score over the forecast.
    pub z_score: f64,
    /// The threshold it passed (`api.anomaly_z`).
    pub threshold: f64,
    /// The forecast value that scored highest, in the service's own units (context scaling
    /// divided out), and its time (epoch ms).
    pub value: f64,
    /// Start of the hour of `value`, epoch ms.
    pub value_at_ms: i64,
    /// Mean of the history, per hour.
    pub history_mean: f64,
    /// Standard deviation used (floored).
    pub history_std: f64,
    /// History points compared with.
    pub history_points: usize,
    /// When it was detected (epoch ms).
    pub detected_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> PolicyConfig {
        PolicyConfig::default()
    }

    #[test]
    fn weight_scales_a_smooth_series_exactly() {
        let v: Vec<f64> = (0..24).map(|i| 100.0 + i as f64).collect();
        let out = apply(&v, 1.5, Scale::Count, &cfg());
        for (a, b) in v.iter().zip(&out.values) {
            assert!((a * 1.5 - b).abs() < 1e-9);
        }
        assert_eq!((out.clamped, out.smoothed), (0, 0));
    }

    #[test]
    fn negatives_and_non_finite_become_zero() {
        let out = apply(
            &[-5.0, f64::NAN, f64::INFINITY, 3.0],
            1.0,
            Scale::Count,
            &cfg(),
        );
        assert!(out.values.iter().all(|v| *v >= 0.0 && v.is_finite()));
        assert_eq!(out.values[0], 0.0);
        assert_eq!(out.clamped, 3);
    }

    #[test]
    fn normalised_metrics_stay_within_0_and_1() {
        let out = apply(&[0.5, 1.7, 2.0, 0.9], 2.0, Scale::Normalised, &cfg());
        assert!(
            out.values.iter().all(|v| (0.0..=1.0).contains(v)),
            "{out:?}"
        );
    }

    #[test]
    fn a_lone_spike_is_limited_and_a_jump_is_smoothed() {
        let mut v = vec![100.0; 24];
        v[12] = 5000.0;
        let out = apply(&v, 1.0, Scale::Count, &cfg());
        // winsorised at Q3 + 3 · (0.1 · median) = 130, then within 50 % of its predecessor
        assert!((out.values[12] - 130.0).abs() < 1e-9, "{:?}", out.values);
        assert_eq!(out.clamped, 1);
        // a step from 100 to 400 inside a wide series is cut to +50 %
        let mut v: Vec<f64> = (0..24)
            .map(|i| if i < 12 { 100.0 } else { 400.0 })
            .collect();
        v[23] = 400.0;
        let out = apply(&v, 1.0, Scale::Count, &cfg());
        assert!((out.values[12] - 100.0 - 0.5 * out.level.max(100.0)).abs() < 1e-9);
        assert!(out.smoothed > 0);
    }

    #[test]
    fn zscore_flags_a_forecast_far_from_history() {
        let history: Vec<f64> = (0..48).map(|i| 100.0 + (i % 5) as f64).collect();
        let calm = forecast_zscore(&history, &[101.0, 103.0]).unwrap();
        assert!(calm.z < ANOMALY_Z, "{calm:?}");
        let wild = forecast_zscore(&history, &[101.0, 400.0]).unwrap();
        assert!(wild.z > ANOMALY_Z);
        assert_eq!(wild.at, 1);
        assert_eq!(forecast_zscore(&history[..4], &[1.0]), None);
        // a flat history: the std floor (1 % of the mean) keeps tiny wobbles calm
        let flat = vec![100.0; 24];
        assert!(forecast_zscore(&flat, &[100.3]).unwrap().z < 1.0);
        assert!(forecast_zscore(&flat, &[110.0]).unwrap().z > ANOMALY_Z);
    }

    fn series() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(
            prop_oneof![
                8 => -1e4..1e6f64,
                1 => Just(f64::NAN),
                1 => Just(f64::INFINITY),
                1 => Just(-f64::INFINITY),
                1 => 0.0..2.0f64,
            ],
            0..64,
        )
    }

    proptest! {
        #[test]
        fn outputs_are_finite_bounded_and_smooth(
            v in series(),
            weight in 0.001..100.0f64,
            normalised in any::<bool>(),
            max_value in 1.0..1e7f64,
            max_jump in 0.05..2.0f64,
        ) {
            let config = PolicyConfig { max_value, max_jump, iqr_k: 3.0 };
            let scale = if normalised { Scale::Normalised } else { Scale::Count };
            let out = apply(&v, weight, scale, &config);
            prop_assert_eq!(out.values.len(), v.len());
            let ceiling = if normalised { 1.0f64.min(max_value) } else { max_value };
            for w in &out.values {
                prop_assert!(w.is_finite() && *w >= 0.0 && *w <= ceiling + 1e-9, "{}", w);
            }
            for i in 1..out.values.len() {
                let prev = out.values[i - 1];
                let step = (out.values[i] - prev).abs();
                prop_assert!(step <= max_jump * prev.max(out.level) * (1.0 + 1e-9) + 1e-9,
                    "step {} at {} (prev {}, level {})", step, i, prev, out.level);
            }
        }

        #[test]
        fn a_constant_series_is_only_weighted(c in 0.0..1e5f64, n in 1usize..48, weight in 0.01..10.0f64) {
            let out = apply(&vec![c; n], weight, Scale::Count, &cfg());
            for w in &out.values {
                prop_assert!((w - c * weight).abs() <= 1e-9 * (1.0 + c * weight));
            }
        }

        #[test]
        fn zscore_is_finite_and_nonnegative(
            h in prop::collection::vec(-1e6..1e6f64, 0..64),
            f in prop::collection::vec(-1e6..1e6f64, 0..32),
        ) {
            if let Some(z) = forecast_zscore(&h, &f) {
                prop_assert!(z.z.is_finite() && z.z >= 0.0);
                prop_assert!(z.at < f.len());
                prop_assert!(z.history_std > 0.0);
            }
        }
    }
}
