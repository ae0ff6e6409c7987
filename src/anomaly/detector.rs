//! The streaming detector interface and the factory that builds detectors by name.

use crate::anomaly::baselines::{NullDetector, RandomDetector, WindowedGaussian};
use crate::anomaly::mcpwatch::McpwatchDetector;
use crate::anomaly::zscore::ZScoreDetector;
use crate::anomaly::{AnomalyConfig, AnomalyError};

/// A detector for one series. It is fed one value at a time, in time order, and sees only the
/// past: `update` returns the anomaly score of `value` given everything fed before it.
pub trait Detector: Send {
    /// Folds one observation in and returns its anomaly score, always within `[0, 1]`.
    /// Values that are not [`usable`] (NaN, infinite, beyond [`MAX_ABS_VALUE`]) are ignored:
    /// score 0, state untouched.
    fn update(&mut self, ts_ms: i64, value: f64) -> f64;

    /// Bytes of state this detector holds for its series (struct plus heap), bounded by a
    /// constant that does not grow with the number of points fed.
    fn state_bytes(&self) -> usize;

    /// The detector's registered name.
    fn name(&self) -> &'static str;

    /// The score from which this detector's own calibration calls for an alert.
    fn alert_threshold(&self) -> f64 {
        0.5
    }

    /// What the detector expects the next value at `ts_ms` to be, from the past only (read
    /// before [`Detector::update`]); `None` when it has no opinion. Shown beside alerts.
    fn expected(&self, _ts_ms: i64) -> Option<f64> {
        None
    }

    /// The score of the last point before any de-duplication of incidents, in `[0, 1]`, for
    /// detectors that report one incident once ([`Detector::update`] then answers low while
    /// the incident goes on). The alert stage uses it to tell "still abnormal" from "back to
    /// normal". `None`: the score is not de-duplicated.
    fn raw_score(&self) -> Option<f64> {
        None
    }
}

/// Values beyond this magnitude are treated like NaN (corrupt input): scored 0, not learned.
/// It keeps every intermediate (squares, sums, `f32` profiles) finite.
pub const MAX_ABS_VALUE: f64 = 1e30;

/// Whether a detector should learn from `value` (finite and of sane magnitude).
pub fn usable(value: f64) -> bool {
    value.is_finite() && value.abs() <= MAX_ABS_VALUE
}

/// Names accepted by [`build_detector`]. NAB result directories use these names, so none holds `_`.
pub const DETECTOR_NAMES: &[&str] = &["mcpwatch", "zscore", "windowedGaussian", "random", "null"];

/// Builds a fresh detector (one per series) by name.
pub fn build_detector(name: &str, cfg: &AnomalyConfig) -> Result<Box<dyn Detector>, AnomalyError> {
    Ok(match name {
        "mcpwatch" => Box::new(McpwatchDetector::new()),
        "zscore" => Box::new(ZScoreDetector::new(cfg.window, cfg.z_threshold)),
        "windowedGaussian" => Box::new(WindowedGaussian::new()),
        "random" => Box::new(RandomDetector::new(42)),
        "null" => Box::new(NullDetector),
        _ => {
            return Err(AnomalyError::UnknownDetector {
                name: name.to_string(),
                known: DETECTOR_NAMES.join(", "),
            })
        }
    })
}
