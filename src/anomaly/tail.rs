//! Streaming tail calibration by peaks over threshold: turns a non-negative surprise statistic
//! into an upper-tail probability that means the same thing on every series, whatever its
//! units, noise level or tail heaviness — which is what lets one alert threshold serve them all.
//!
//! A high quantile `u` of the statistic (level `q`) is tracked by stochastic approximation; the
//! excesses over `u` are modelled by a generalised Pareto distribution whose scale `beta` and
//! shape `xi` come from the exponentially weighted first two moments of the excesses (method of
//! moments), so above `u`:
//!
//! `P(F > f) = (1 - q) (1 + xi (f - u) / beta)^(-1 / xi)`.
//!
//! State: six numbers. Cost: a comparison for most points, one `powf` above `u`.

/// Settings shared by all calibrators of a detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TailParams {
    /// Quantile used as the peaks-over-threshold level.
    pub q: f64,
    /// Adaptation rate of the quantile and of the mean magnitude (per point).
    pub rate: f64,
    /// Upper bound of the GPD shape (heavier tails are treated as this heavy).
    pub xi_max: f64,
    /// Lower bound of the GPD shape. Below 0 the fitted tail has a finite end point and any
    /// value past it gets probability 0, which a short, noisy history makes far too easy.
    pub xi_min: f64,
}

/// Points needed before the calibrator gives probabilities below 1.
const MIN_POINTS: u32 = 20;
/// Excesses needed before the calibrator gives probabilities below 1.
const MIN_EXCESSES: u32 = 5;
/// The excess moments adapt this many times faster than the quantile (excesses are rarer).
const EXCESS_RATE_FACTOR: f64 = 4.0;
/// Smallest probability reported.
pub const MIN_P: f64 = 1e-300;

#[derive(Debug, Clone, Copy, Default)]
pub struct Tail {
    n: u32,
    mean: f64,
    u: f64,
    ex_n: u32,
    ex_mean: f64,
    ex_sq: f64,
}

impl Tail {
    pub const fn new() -> Self {
        Tail {
            n: 0,
            mean: 0.0,
            u: 0.0,
            ex_n: 0,
            ex_mean: 0.0,
            ex_sq: 0.0,
        }
    }

    /// Upper-tail probability of `f` under the current model (1 while still learning and for
    /// every value at or below the tracked quantile).
    pub fn p_value(&self, f: f64, p: &TailParams) -> f64 {
        if self.n < MIN_POINTS || self.ex_n < MIN_EXCESSES || f <= self.u {
            return 1.0;
        }
        let m = self.ex_mean.max(1e-12 * (1.0 + self.u.abs()));
        let var = (self.ex_sq - self.ex_mean * self.ex_mean).max(0.0);
        let (xi, beta) = if var > 0.0 {
            // GPD moments: mean = beta / (1 - xi), var = mean^2 / (1 - 2 xi).
            let r = m * m / var;
            let xi = (0.5 * (1.0 - r)).min(p.xi_max).max(p.xi_min);
            (xi, (0.5 * m * (1.0 + r)).max(MIN_P))
        } else {
            (0.0, m)
        };
        let y = (f - self.u) / beta;
        let survival = if xi.abs() < 1e-6 {
            (-y).exp()
        } else {
            let base = 1.0 + xi * y;
            if base <= 0.0 {
                0.0
            } else {
                base.powf(-1.0 / xi)
            }
        };
        ((1.0 - p.q) * survival).max(MIN_P)
    }

    /// Scores `f` against the past (its tail probability), then learns it.
    pub fn update(&mut self, f: f64, p: &TailParams) -> f64 {
        let pv = self.p_value(f, p);
        self.learn(f, p);
        pv
    }

    /// Learns `f` without scoring it.
    pub fn learn(&mut self, f: f64, p: &TailParams) {
        self.n = self.n.saturating_add(1);
        let r = p.rate.max(1.0 / self.n as f64);
        self.mean += r * (f - self.mean);
        if self.n == 1 {
            self.u = f;
            return;
        }
        // Stochastic quantile step, proportional to the statistic's mean magnitude: at
        // equilibrium P(F > u) = 1 - q.
        let step = 2.0 * r * self.mean.abs().max(1e-12);
        if f > self.u {
            self.u += step * p.q;
            let ex = f - self.u;
            if ex > 0.0 {
                self.ex_n = self.ex_n.saturating_add(1);
                let re = (p.rate * EXCESS_RATE_FACTOR).max(1.0 / self.ex_n as f64);
                self.ex_mean += re * (ex - self.ex_mean);
                self.ex_sq += re * (ex * ex - self.ex_sq);
            }
        } else {
            self.u -= step * (1.0 - p.q);
        }
    }
}
