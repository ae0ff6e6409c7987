//! Anomaly likelihood, after Numenta's: is the *recent* level of surprise unusual for this
//! series? A raw surprise in `[0, 1]` (the forecast error in units of its usual size, clipped) is
//! averaged over the last [`SHORT`] points and, exponentially, over a longer horizon; both
//! averages are calibrated into tail probabilities by their own peaks-over-threshold model
//! ([`Tail`]) instead of Numenta's Gaussian. The short average catches bursts of surprise (a
//! broken pattern, a run of spikes), the long one slower changes (spikes getting denser, noise
//! growing) that no single point reveals.

use crate::anomaly::tail::{Tail, TailParams};

/// Length of the short-term average.
pub const SHORT: usize = 10;

#[derive(Debug, Clone)]
pub struct AnomalyLikelihood {
    ring: [f64; SHORT],
    head: usize,
    sum: f64,
    since_resum: u32,
    long: f64,
    short_tail: Tail,
    long_tail: Tail,
}

impl Default for AnomalyLikelihood {
    fn default() -> Self {
        Self::new()
    }
}

impl AnomalyLikelihood {
    pub fn new() -> Self {
        AnomalyLikelihood {
            ring: [0.0; SHORT],
            head: 0,
            sum: 0.0,
            since_resum: 0,
            long: 0.0,
            short_tail: Tail::new(),
            long_tail: Tail::new(),
        }
    }

    /// Adds a raw surprise in `[0, 1]`; returns the tail probabilities of the short and of the
    /// long average (both including this point), learning them afterwards.
    pub fn update(&mut self, raw: f64, long_rate: f64, tp: &TailParams) -> (f64, f64) {
        let raw = raw.clamp(0.0, 1.0);
        self.sum += raw - self.ring[self.head];
        self.ring[self.head] = raw;
        self.head = (self.head + 1) % SHORT;
        self.since_resum += 1;
        if self.since_resum >= 1024 {
            self.since_resum = 0;
            self.sum = self.ring.iter().sum();
        }
        self.long += long_rate * (raw - self.long);
        let short_avg = self.sum / SHORT as f64;
        (
            self.short_tail.update(short_avg, tp),
            self.long_tail.update(self.long, tp),
        )
    }
}
