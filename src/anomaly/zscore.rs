//! The seed's detector: the z-score of a value against the mean and standard deviation of the
//! previous `window` values (168 hourly buckets = one week), flagged when `|z| >= z_threshold`
//! (`ANOMALY_Z`, default 3.0).
//!
//! The score is the monotone map `|z| / (|z| + z_threshold)`, so it lies in `[0, 1)`, equals 0.5
//! exactly at the configured threshold, and approaches 1 for extreme values; a jump off a
//! perfectly flat history (standard deviation 0) scores 1.

use crate::anomaly::detector::{usable, Detector};

/// Points of history needed before the detector scores anything but 0.
const MIN_HISTORY: usize = 2;

#[derive(Debug, Clone)]
pub struct ZScoreDetector {
    window: usize,
    z_threshold: f64,
    buf: Vec<f64>,
    head: usize,
    /// Values are accumulated relative to `shift` (the first value seen) to limit cancellation.
    shift: f64,
    sum: f64,
    sum_sq: f64,
    since_resum: usize,
}

impl ZScoreDetector {
    pub fn new(window: usize, z_threshold: f64) -> Self {
        let window = window.max(2);
        ZScoreDetector {
            window,
            z_threshold: if z_threshold > 0.0 && z_threshold.is_finite() {
                z_threshold
            } else {
                3.0
            },
            buf: Vec::with_capacity(window),
            head: 0,
            shift: f64::NAN,
            sum: 0.0,
            sum_sq: 0.0,
            since_resum: 0,
        }
    }

    /// The z-score of `value` against the current window (`None` before enough history).
    pub fn z(&self, value: f64) -> Option<f64> {
        let n = self.buf.len();
        if n < MIN_HISTORY {
            return None;
        }
        let nf = n as f64;
        let mean = self.sum / nf;
        let var = (self.sum_sq / nf - mean * mean).max(0.0);
        let dev = value - self.shift - mean;
        let std = var.sqrt();
        // Relative floor: a window that is flat up to rounding noise counts as flat.
        let floor = 1e-9 * (mean + self.shift).abs().max(1e-12);
        if std <= floor {
            return Some(if dev.abs() <= floor {
                0.0
            } else {
                f64::INFINITY
            });
        }
        Some(dev / std)
    }

    fn push(&mut self, value: f64) {
        if self.shift.is_nan() {
            self.shift = value;
        }
        let v = value - self.shift;
        if self.buf.len() < self.window {
            self.buf.push(v);
        } else {
            let old = self.buf[self.head];
            self.buf[self.head] = v;
            self.head = (self.head + 1) % self.window;
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        self.sum += v;
        self.sum_sq += v * v;
        self.since_resum += 1;
        if self.since_resum >= self.window {
            // Periodic exact re-summation keeps the running sums from drifting.
            self.since_resum = 0;
            self.sum = self.buf.iter().sum();
            self.sum_sq = self.buf.iter().map(|x| x * x).sum();
        }
    }
}

impl Detector for ZScoreDetector {
    fn update(&mut self, _ts_ms: i64, value: f64) -> f64 {
        if !usable(value) {
            return 0.0;
        }
        let score = match self.z(value) {
            None => 0.0,
            Some(z) if z.is_infinite() => 1.0,
            Some(z) => {
                let a = z.abs();
                a / (a + self.z_threshold)
            }
        };
        self.push(value);
        if score.is_nan() {
            0.0
        } else {
            score.clamp(0.0, 1.0)
        }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.buf.capacity() * std::mem::size_of::<f64>()
    }

    fn name(&self) -> &'static str {
        "zscore"
    }

    /// The window's mean.
    fn expected(&self, _ts_ms: i64) -> Option<f64> {
        let n = self.buf.len();
        (n >= MIN_HISTORY).then(|| self.shift + self.sum / n as f64)
    }
}
