//! Time-of-day envelope: for each half hour of the day, the range of values seen at that time on
//! past days (widened to the neighbouring half hours, so a daily job that drifts by a few minutes
//! stays inside). A value outside the envelope of its time of day is surprising even when it is
//! well within the series' overall range — a missing daily peak, a peak that is too high, a flat
//! stretch where the day normally moves. The envelope shrinks a little towards the typical value
//! at each visit (once a day), so it forgets old extremes; the excess outside it is calibrated by
//! a [`Tail`].

use crate::anomaly::tail::{Tail, TailParams};

/// Half-hour bins.
pub const BINS: usize = 48;
const DAY_MS: i64 = 86_400_000;
const BIN_MS: i64 = DAY_MS / BINS as i64;
/// Rate at which a bin's typical value follows the values seen in it.
const MID_RATE: f32 = 0.2;

#[derive(Debug, Clone)]
pub struct Envelope {
    hi: [f32; BINS],
    lo: [f32; BINS],
    mid: [f32; BINS],
    seen: [u16; BINS],
    bin: usize,
    tail: Tail,
}

impl Default for Envelope {
    fn default() -> Self {
        Self::new()
    }
}

impl Envelope {
    pub fn new() -> Self {
        Envelope {
            hi: [0.0; BINS],
            lo: [0.0; BINS],
            mid: [0.0; BINS],
            seen: [0; BINS],
            bin: usize::MAX,
            tail: Tail::new(),
        }
    }

    /// Scores `value` at `ts_ms` against the envelope of its time of day, then learns it.
    /// `decay` is the fraction by which a bin's envelope shrinks towards its typical value at
    /// each visit. Returns the tail probability of the excess (1 before any history).
    pub fn update(&mut self, ts_ms: i64, value: f64, decay: f64, tp: &TailParams) -> f64 {
        let bin = (ts_ms.rem_euclid(DAY_MS) / BIN_MS) as usize;
        if bin != self.bin {
            if self.seen[bin] > 0 {
                let d = decay as f32;
                let mid = self.mid[bin];
                self.hi[bin] -= d * (self.hi[bin] - mid);
                self.lo[bin] += d * (mid - self.lo[bin]);
            }
            self.bin = bin;
        }
        let mut hi = f32::NEG_INFINITY;
        let mut lo = f32::INFINITY;
        for b in [(bin + BINS - 1) % BINS, bin, (bin + 1) % BINS] {
            if self.seen[b] > 0 {
                hi = hi.max(self.hi[b]);
                lo = lo.min(self.lo[b]);
            }
        }
        let v = value as f32;
        let p = if hi >= lo {
            let excess = (v - hi).max(lo - v).max(0.0) as f64;
            self.tail.update(excess, tp)
        } else {
            1.0
        };
        if self.seen[bin] == 0 {
            self.hi[bin] = v;
            self.lo[bin] = v;
            self.mid[bin] = v;
        } else {
            self.hi[bin] = self.hi[bin].max(v);
            self.lo[bin] = self.lo[bin].min(v);
            self.mid[bin] += MID_RATE * (v - self.mid[bin]);
        }
        self.seen[bin] = self.seen[bin].saturating_add(1);
        p
    }
}
