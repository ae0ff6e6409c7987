//! Two "loss" signals that forecast errors miss because a dying series is *easier* to predict:
//!
//! * [`LevelDrop`]: how far the value has fallen below its long-run level (an exponentially
//!   weighted mean), calibrated by a [`Tail`] — a machine cooling down, traffic falling away.
//! * [`QuietDrop`]: how much quieter the series has become, the log ratio of the long-run to the
//!   short-run mean absolute change, calibrated by a [`Tail`] — a stuck sensor, a flat-lined
//!   service, a pattern that stopped moving.

use crate::anomaly::tail::{Tail, TailParams};

/// Rate of the long-run level.
const LEVEL_RATE: f64 = 0.01;
/// A single change counts at most this many long-run mean changes in the long-run average.
const CHANGE_CLIP: f64 = 10.0;
const EPS: f64 = 1e-12;

#[derive(Debug, Clone, Copy)]
pub struct LevelDrop {
    level: f64,
    started: bool,
    tail: Tail,
}

impl Default for LevelDrop {
    fn default() -> Self {
        Self::new()
    }
}

impl LevelDrop {
    pub const fn new() -> Self {
        LevelDrop {
            level: 0.0,
            started: false,
            tail: Tail::new(),
        }
    }

    /// Tail probability of the drop below the long-run level (1 for the first point).
    pub fn update(&mut self, value: f64, tp: &TailParams) -> f64 {
        let p = if self.started {
            self.tail.update((self.level - value).max(0.0), tp)
        } else {
            self.started = true;
            self.level = value;
            1.0
        };
        self.level += LEVEL_RATE * (value - self.level);
        p
    }
}

#[derive(Debug, Clone, Copy)]
pub struct QuietDrop {
    last: f64,
    short: f64,
    long: f64,
    n: u8,
    tail: Tail,
}

impl Default for QuietDrop {
    fn default() -> Self {
        Self::new()
    }
}

impl QuietDrop {
    pub const fn new() -> Self {
        QuietDrop {
            last: 0.0,
            short: 0.0,
            long: 0.0,
            n: 0,
            tail: Tail::new(),
        }
    }

    /// Tail probability of the current quietness (1 for the first two points).
    pub fn update(&mut self, value: f64, short_rate: f64, long_rate: f64, tp: &TailParams) -> f64 {
        let mut p = 1.0;
        if self.n > 0 {
            let d = (value - self.last).abs();
            if self.n == 1 {
                self.short = d;
                self.long = d;
            }
            self.short += short_rate * (d - self.short);
            let log_ratio = ((self.short + EPS) / (self.long + EPS)).ln();
            self.long += long_rate * (d.min(CHANGE_CLIP * self.long.max(EPS)) - self.long);
            p = self.tail.update((-log_ratio).max(0.0), tp);
            self.n = 2;
        } else {
            self.n = 1;
        }
        self.last = value;
        p
    }
}
