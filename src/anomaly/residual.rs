//! Streaming forecasters and their error scales: a slow level plus a time-of-day profile
//! (seasonal), a fast level (local), and the last value (persistence). Level and profile updates
//! are clipped at `huber` error scales, so an outlier barely moves them. Each predictor keeps an
//! exponentially weighted mean absolute error; the residual of the currently best predictor
//! (lowest long-run error) is what the detector scores.

/// Time-of-day bins of the seasonal profile (30-minute bins).
pub const BINS_PER_DAY: usize = 48;
const DAY_MS: i64 = 86_400_000;

/// Exponentially weighted mean absolute error, robust to the outliers it is meant to flag:
/// each update is clipped at `clip` times the current scale.
#[derive(Debug, Clone, Copy)]
pub struct ErrScale {
    pub mae: f64,
    pub n: u32,
}

impl ErrScale {
    pub const fn new() -> Self {
        ErrScale { mae: 0.0, n: 0 }
    }

    pub fn update(&mut self, abs_err: f64, rate: f64, clip: f64) {
        self.n = self.n.saturating_add(1);
        // Plain average while young, then exponential weighting.
        let r = rate.max(1.0 / self.n as f64);
        let e = if self.n > 8 && self.mae > 0.0 {
            abs_err.min(clip * self.mae)
        } else {
            abs_err
        };
        self.mae += r * (e - self.mae);
    }
}

impl Default for ErrScale {
    fn default() -> Self {
        Self::new()
    }
}

/// Which predictor explains the series best.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predictor {
    Seasonal = 0,
    Local = 1,
    Persistence = 2,
}

/// Rates of the predictors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResidualParams {
    pub slow_rate: f64,
    pub fast_rate: f64,
    pub season_rate: f64,
    pub err_rate: f64,
    pub select_rate: f64,
    pub clip: f64,
    /// Level updates are clipped at `huber` error scales (0 = no clipping).
    pub huber: f64,
}

/// One residual observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Residual {
    /// Signed error of the selected predictor.
    pub err: f64,
    /// Its error scale (mean absolute error, floored).
    pub scale: f64,
    pub predictor: Predictor,
}

/// The predictors' state for one series (about 0.5 KB).
#[derive(Debug, Clone)]
pub struct ResidualModel {
    slow: f64,
    fast: f64,
    last: f64,
    profile: [f32; BINS_PER_DAY],
    seen: [u8; BINS_PER_DAY],
    scales: [ErrScale; 3],
    select: [f64; 3],
    slow_dev: ErrScale,
    n: u64,
    /// Floor of the scale: a tiny fraction of the typical magnitude of the series.
    magnitude: f64,
}

impl Default for ResidualModel {
    fn default() -> Self {
        Self::new()
    }
}

impl ResidualModel {
    pub fn new() -> Self {
        ResidualModel {
            slow: 0.0,
            fast: 0.0,
            last: 0.0,
            profile: [0.0; BINS_PER_DAY],
            seen: [0; BINS_PER_DAY],
            scales: [ErrScale::new(); 3],
            select: [0.0; 3],
            slow_dev: ErrScale::new(),
            n: 0,
            magnitude: 0.0,
        }
    }

    /// The slow (robust) level.
    pub fn slow(&self) -> f64 {
        self.slow
    }

    pub fn n(&self) -> u64 {
        self.n
    }

    fn bin(ts_ms: i64) -> usize {
        let ms = ts_ms.rem_euclid(DAY_MS);
        (ms / (DAY_MS / BINS_PER_DAY as i64)) as usize
    }

    /// The prediction [`ResidualModel::update`] would score a value at `ts_ms` against, without
    /// learning anything (`None` before the first point).
    pub fn predict(&self, ts_ms: i64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let bin = Self::bin(ts_ms);
        let preds = [
            if self.seen[bin] > 0 {
                self.slow + self.profile[bin] as f64
            } else {
                self.fast
            },
            self.fast,
            self.last,
        ];
        let mut best = 1usize;
        for k in [2usize, 0] {
            if self.select[k] < self.select[best] * 0.999 {
                best = k;
            }
        }
        Some(preds[best])
    }

    /// Scores `value` against the predictions made from the past, then learns from it.
    /// Returns `None` for the first point.
    pub fn update(&mut self, ts_ms: i64, value: f64, p: &ResidualParams) -> Option<Residual> {
        let bin = Self::bin(ts_ms);
        self.n += 1;
        if self.n == 1 {
            self.slow = value;
            self.fast = value;
            self.last = value;
            self.magnitude = value.abs();
            return None;
        }
        let season_ready = self.seen[bin] > 0;
        let preds = [
            if season_ready {
                self.slow + self.profile[bin] as f64
            } else {
                self.fast
            },
            self.fast,
            self.last,
        ];
        let errs = [value - preds[0], value - preds[1], value - preds[2]];

        // Select the predictor with the lowest long-run error (seasonal only once it has data).
        let mut best = 1usize;
        for k in [2usize, 0] {
            if self.select[k] < self.select[best] * 0.999 {
                best = k;
            }
        }
        let floor = (self.magnitude * 1e-6).max(1e-12);
        let scale = self.scales[best].mae.max(floor);
        let out = Residual {
            err: errs[best],
            scale,
            predictor: match best {
                0 => Predictor::Seasonal,
                1 => Predictor::Local,
                _ => Predictor::Persistence,
            },
        };

        // Learn.
        let r = p.select_rate.max(1.0 / self.n as f64);
        for ((scale, select), err) in self.scales.iter_mut().zip(&mut self.select).zip(errs) {
            let scale_k = scale.mae.max(floor);
            let a = err.abs();
            scale.update(a, p.err_rate, p.clip);
            *select += r * (a.min(p.clip * scale_k) - *select);
        }
        self.magnitude += 0.01 * (value.abs() - self.magnitude);
        let clip = |x: f64, center: f64, c: f64| {
            if p.huber > 0.0 && self.n > 20 {
                x.max(center - c).min(center + c)
            } else {
                x
            }
        };
        let c_fast = p.huber * self.scales[1].mae.max(floor);
        let c_slow = p.huber * self.slow_dev.mae.max(floor);
        self.slow_dev
            .update((value - self.slow).abs(), p.slow_rate, p.clip);
        self.slow += p.slow_rate * (clip(value, self.slow, c_slow) - self.slow);
        self.fast += p.fast_rate * (clip(value, self.fast, c_fast) - self.fast);
        self.last = value;
        let c_season = p.huber * self.scales[0].mae.max(floor);
        let dev = clip(value - self.slow, self.profile[bin] as f64, c_season) as f32;
        if self.seen[bin] == 0 {
            self.profile[bin] = dev;
        } else {
            let r = (p.season_rate as f32).max(1.0 / (self.seen[bin] as f32 + 1.0));
            self.profile[bin] += r * (dev - self.profile[bin]);
        }
        self.seen[bin] = self.seen[bin].saturating_add(1);
        Some(out)
    }
}
