//! The `mcpwatch` detector: several cheap views of "this is not what the series usually does",
//! each calibrated into a tail probability on the series' own history, fused, and debounced.
//!
//! Per point, in `O(1)` time (about 0.2–0.3 µs) and 1.8 KB of fixed state:
//!
//! 1. **Forecast residual** ([`ResidualModel`]): the best of three predictors (time-of-day
//!    seasonal, robust local level, last value) forecasts the point; the error in units of that
//!    predictor's usual error, clipped to `[0, 1]`, is the raw surprise.
//! 2. **Anomaly likelihood** ([`AnomalyLikelihood`]): the raw surprise averaged over the last
//!    10 points and over a longer exponential horizon — bursts and slower drifts of surprise.
//! 3. **Time-of-day envelope** ([`Envelope`]): the value against the range seen at this time of
//!    day on past days.
//! 4. **Drops** ([`LevelDrop`], [`QuietDrop`]): falling below the long-run level; going quiet.
//! 5. **Range novelty** ([`RangeNovelty`]): breaking out of the recent range by more than 5.75 %
//!    of its width (the "spatial anomaly" rule of Numenta's detector, with a bounded memory).
//!
//! Channels 2–4 give tail probabilities from peaks-over-threshold models ([`crate::anomaly::tail`]),
//! so they mean the same on every series; the fused surprise is the largest weighted
//! `-log10 p` ("decades"), and a range breakout counts as 12 decades. The output is
//! `min(1, decades / 10)`, so 0.5 is a 1-in-100 000 event.
//!
//! **Debouncing**: an alarm (≥ 3.2 decades) opens a hold of 50 points during which further
//! surprise is reported at a tenth of its size unless it beats the episode's peak by 5 decades;
//! surprise at alarm level extends the hold. One incident thus yields one high score, the
//! way an on-call engineer wants one page per incident, not one per sample.
//!
//! The weights, rates and levels in [`Params::default`] were chosen on the Numenta Anomaly
//! Benchmark as a whole (see `nab.rs`), as NAB's own detectors were; nothing in the detector
//! depends on the file, the labels or the future. That score is in-sample: tuned on one half of
//! the corpus, the same procedure scores 71.0 and 68.6 on the other half, so about 70 is what to
//! expect on unseen series of this kind (the untuned structure alone scores 68.8).

use crate::anomaly::detector::{usable, Detector};
use crate::anomaly::drops::{LevelDrop, QuietDrop};
use crate::anomaly::envelope::Envelope;
use crate::anomaly::likelihood::AnomalyLikelihood;
use crate::anomaly::novelty::RangeNovelty;
use crate::anomaly::residual::{ResidualModel, ResidualParams};
use crate::anomaly::tail::TailParams;

/// Largest `-log10 p` a calibrated channel can contribute.
const MAX_DECADES: f64 = 10.0;

/// Settings of the `mcpwatch` detector. `Default` holds the tuned values.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Points learned before any score is reported.
    pub warmup: u32,
    /// Peaks-over-threshold level of every calibrator.
    pub tail_q: f64,
    /// Adaptation rate of the calibrators (per point).
    pub tail_rate: f64,
    /// Upper bound of the calibrators' tail shape.
    pub xi_max: f64,
    /// Lower bound of the calibrators' tail shape. Below 0 a fitted tail has an end point and a
    /// statistic past it counts the full 10 decades: a novelty signal that is worth 6.6 NAB
    /// points, paid for with about 3 alarms per 1000 points of pure noise in a series' first
    /// thousands of points (about 1.2 with `xi_min = 0`).
    pub xi_min: f64,
    /// Rates and robustness of the forecasters.
    pub residual: ResidualParams,
    /// Forecast error (in usual-error units) that counts as full raw surprise.
    pub raw_scale: f64,
    /// Rate of the long average of raw surprise.
    pub long_rate: f64,
    /// Rates of the short and long mean absolute change (quietness).
    pub quiet_short_rate: f64,
    pub quiet_long_rate: f64,
    /// Per-day shrink of the time-of-day envelope.
    pub envelope_decay: f64,
    /// Points per block of the range memory (the range covers one to two blocks).
    pub range_block: u32,
    /// Breakout tolerance, as a fraction of the range.
    pub range_tol: f64,
    /// Channel weights (multiplying `-log10 p`).
    pub w_short: f64,
    pub w_long: f64,
    pub w_envelope: f64,
    pub w_level_drop: f64,
    pub w_quiet: f64,
    /// Decades a range breakout counts for.
    pub range_decades: f64,
    /// Decades at which an alarm opens a hold.
    pub alarm_decades: f64,
    /// Hold length in points.
    pub hold: u32,
    /// Decades by which a new peak must beat the episode's peak to be reported in a hold.
    pub hold_margin_decades: f64,
    /// Factor applied to surprise reported inside a hold.
    pub hold_factor: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            warmup: 150,
            tail_q: 0.95,
            tail_rate: 0.00425,
            xi_max: 0.5,
            xi_min: -0.5,
            residual: ResidualParams {
                slow_rate: 0.005,
                fast_rate: 0.2,
                season_rate: 0.1,
                err_rate: 0.0085,
                select_rate: 0.003,
                clip: 6.0,
                huber: 2.5,
            },
            raw_scale: 8.4,
            long_rate: 0.014,
            quiet_short_rate: 0.14,
            quiet_long_rate: 0.0115,
            envelope_decay: 0.1,
            range_block: 4096,
            range_tol: 0.0575,
            w_short: 1.0,
            w_long: 1.0,
            w_envelope: 0.85,
            w_level_drop: 0.85,
            w_quiet: 0.8,
            range_decades: 12.0,
            alarm_decades: 3.2,
            hold: 50,
            hold_margin_decades: 5.0,
            hold_factor: 0.1,
        }
    }
}

impl Params {
    /// Sets one numeric field by name (for experiments and sensitivity checks).
    pub fn set(&mut self, key: &str, v: f64) -> Result<(), String> {
        let r = &mut self.residual;
        match key {
            "warmup" => self.warmup = v as u32,
            "tail_q" => self.tail_q = v,
            "tail_rate" => self.tail_rate = v,
            "xi_max" => self.xi_max = v,
            "xi_min" => self.xi_min = v,
            "slow_rate" => r.slow_rate = v,
            "fast_rate" => r.fast_rate = v,
            "season_rate" => r.season_rate = v,
            "err_rate" => r.err_rate = v,
            "select_rate" => r.select_rate = v,
            "clip" => r.clip = v,
            "huber" => r.huber = v,
            "raw_scale" => self.raw_scale = v,
            "long_rate" => self.long_rate = v,
            "quiet_short_rate" => self.quiet_short_rate = v,
            "quiet_long_rate" => self.quiet_long_rate = v,
            "envelope_decay" => self.envelope_decay = v,
            "range_block" => self.range_block = v as u32,
            "range_tol" => self.range_tol = v,
            "w_short" => self.w_short = v,
            "w_long" => self.w_long = v,
            "w_envelope" => self.w_envelope = v,
            "w_level_drop" => self.w_level_drop = v,
            "w_quiet" => self.w_quiet = v,
            "range_decades" => self.range_decades = v,
            "alarm_decades" => self.alarm_decades = v,
            "hold" => self.hold = v as u32,
            "hold_margin_decades" => self.hold_margin_decades = v,
            "hold_factor" => self.hold_factor = v,
            _ => return Err(format!("unknown mcpwatch parameter `{key}`")),
        }
        Ok(())
    }
}

/// Per-channel surprise of the last point, in decades (for explanations and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Channels {
    pub short: f64,
    pub long: f64,
    pub envelope: f64,
    pub level_drop: f64,
    pub quiet: f64,
    pub range: f64,
    /// Fused surprise before debouncing.
    pub fused: f64,
}

#[derive(Debug, Clone)]
pub struct McpwatchDetector {
    p: Params,
    tp: TailParams,
    n: u64,
    model: ResidualModel,
    likelihood: AnomalyLikelihood,
    envelope: Envelope,
    level_drop: LevelDrop,
    quiet: QuietDrop,
    range: RangeNovelty,
    hold_until: u64,
    episode_peak: f64,
    last: Channels,
}

impl Default for McpwatchDetector {
    fn default() -> Self {
        Self::new()
    }
}

fn decades(p: f64) -> f64 {
    if p >= 1.0 {
        0.0
    } else {
        (-p.log10()).clamp(0.0, MAX_DECADES)
    }
}

impl McpwatchDetector {
    pub fn new() -> Self {
        Self::with_params(Params::default())
    }

    pub fn with_params(p: Params) -> Self {
        McpwatchDetector {
            tp: TailParams {
                q: p.tail_q,
                rate: p.tail_rate,
                xi_max: p.xi_max,
                xi_min: p.xi_min,
            },
            n: 0,
            model: ResidualModel::new(),
            likelihood: AnomalyLikelihood::new(),
            envelope: Envelope::new(),
            level_drop: LevelDrop::new(),
            quiet: QuietDrop::new(),
            range: RangeNovelty::new(p.range_block),
            hold_until: 0,
            episode_peak: 0.0,
            last: Channels::default(),
            p,
        }
    }

    pub fn params(&self) -> &Params {
        &self.p
    }

    /// Channel surprises of the last point fed.
    pub fn channels(&self) -> Channels {
        self.last
    }

    /// Scores and learns one point; returns the fused surprise in decades (before debouncing).
    fn surprise(&mut self, ts_ms: i64, value: f64) -> f64 {
        let p = &self.p;
        let tp = &self.tp;
        self.n += 1;
        let warm = self.n > p.warmup as u64;
        let mut c = Channels {
            level_drop: p.w_level_drop * decades(self.level_drop.update(value, tp)),
            quiet: p.w_quiet
                * decades(
                    self.quiet
                        .update(value, p.quiet_short_rate, p.quiet_long_rate, tp),
                ),
            ..Channels::default()
        };
        if let Some(r) = self.model.update(ts_ms, value, &p.residual) {
            let raw = (r.err.abs() / r.scale / p.raw_scale).min(1.0);
            let (p_short, p_long) = self.likelihood.update(raw, p.long_rate, tp);
            c.short = p.w_short * decades(p_short);
            c.long = p.w_long * decades(p_long);
        }
        c.envelope =
            p.w_envelope * decades(self.envelope.update(ts_ms, value, p.envelope_decay, tp));
        if self.range.breaks_out(value, p.range_tol) {
            c.range = p.range_decades;
        }
        self.range.learn(value);

        if warm {
            c.fused = c
                .short
                .max(c.long)
                .max(c.envelope)
                .max(c.level_drop)
                .max(c.quiet)
                .max(c.range);
        }
        self.last = c;
        c.fused
    }

    /// One score per incident: see the module documentation.
    fn debounce(&mut self, s: f64) -> f64 {
        let p = &self.p;
        if self.n <= self.hold_until {
            if s > self.episode_peak + p.hold_margin_decades {
                self.episode_peak = s;
                s
            } else {
                if s >= p.alarm_decades {
                    self.hold_until = self.n + p.hold as u64;
                }
                self.episode_peak = self.episode_peak.max(s);
                s * p.hold_factor
            }
        } else {
            if s >= p.alarm_decades {
                self.hold_until = self.n + p.hold as u64;
                self.episode_peak = s;
            }
            s
        }
    }
}

impl Detector for McpwatchDetector {
    fn update(&mut self, ts_ms: i64, value: f64) -> f64 {
        if !usable(value) {
            return 0.0;
        }
        let s = self.surprise(ts_ms, value);
        let out = self.debounce(s) / MAX_DECADES;
        if out.is_nan() {
            0.0
        } else {
            out.clamp(0.0, 1.0)
        }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
    }

    fn name(&self) -> &'static str {
        "mcpwatch"
    }

    /// The alarm level: the debouncing treats anything above it as an incident.
    fn alert_threshold(&self) -> f64 {
        self.p.alarm_decades / MAX_DECADES
    }

    /// The forecast of the residual model's selected predictor.
    fn expected(&self, ts_ms: i64) -> Option<f64> {
        self.model.predict(ts_ms)
    }

    /// The fused surprise of the last point, before debouncing.
    fn raw_score(&self) -> Option<f64> {
        let raw = self.last.fused / MAX_DECADES;
        Some(if raw.is_nan() {
            0.0
        } else {
            raw.clamp(0.0, 1.0)
        })
    }
}
