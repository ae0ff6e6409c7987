//! Reference detectors of the Numenta Anomaly Benchmark, re-implemented to validate the scorer:
//! a published detector whose official per-file results are known must score the same here.
//!
//! * [`NullDetector`] — always 0 (the normalisation floor of NAB).
//! * [`RandomDetector`] — NAB's `random` detector: Python's `random.uniform(0, 1)` after
//!   `random.seed(42)` for every file, reproduced bit for bit with MT19937 (`init_by_array`,
//!   53-bit `random()`).
//! * [`WindowedGaussian`] — NAB's `windowedGaussian` detector: `1 - Q(|x - mean| / std)` over a
//!   window of the last 6400 values that slides in steps of 100.
//!
//! NAB's published result files were written by Python 2, whose `str(float)` keeps 12
//! significant digits; both detectors round their scores the same way ([`py2_str_round`]), so
//! `windowedGaussian`'s many scores within 5e-13 of 1 tie at exactly 1.0 as they do in NAB.
//!
//! These are baselines, not production detectors: `windowedGaussian` holds 52 KB per series.

/// Rounds to 12 significant digits, as Python 2's `str(float)` (`%.12g`) does.
pub fn py2_str_round(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    format!("{x:.11e}").parse().unwrap_or(x)
}

use crate::anomaly::detector::{usable, Detector};

/// Always 0: the detector NAB normalises against.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullDetector;

impl Detector for NullDetector {
    fn update(&mut self, _ts_ms: i64, _value: f64) -> f64 {
        0.0
    }
    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
    }
    fn name(&self) -> &'static str {
        "null"
    }
}

const MT_N: usize = 624;
const MT_M: usize = 397;

/// MT19937 seeded exactly like CPython's `random.seed(int)`.
#[derive(Clone)]
pub struct Mt19937 {
    mt: [u32; MT_N],
    mti: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937").field("mti", &self.mti).finish()
    }
}

impl Mt19937 {
    fn init_genrand(s: u32) -> Self {
        let mut mt = [0u32; MT_N];
        mt[0] = s;
        for i in 1..MT_N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { mt, mti: MT_N }
    }

    /// `init_by_array` of the reference implementation, as CPython seeds from an integer.
    pub fn from_python_seed(seed: u32) -> Self {
        let key = [seed];
        let mut g = Self::init_genrand(19_650_218);
        let mt = &mut g.mt;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..MT_N.max(key.len()) {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= MT_N {
                mt[0] = mt[MT_N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..MT_N - 1 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= MT_N {
                mt[0] = mt[MT_N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        g
    }

    pub fn next_u32(&mut self) -> u32 {
        const MAG01: [u32; 2] = [0, 0x9908_b0df];
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        if self.mti >= MT_N {
            let mt = &mut self.mt;
            for kk in 0..MT_N - MT_M {
                let y = (mt[kk] & UPPER) | (mt[kk + 1] & LOWER);
                mt[kk] = mt[kk + MT_M] ^ (y >> 1) ^ MAG01[(y & 1) as usize];
            }
            for kk in MT_N - MT_M..MT_N - 1 {
                let y = (mt[kk] & UPPER) | (mt[kk + 1] & LOWER);
                mt[kk] = mt[kk + MT_M - MT_N] ^ (y >> 1) ^ MAG01[(y & 1) as usize];
            }
            let y = (mt[MT_N - 1] & UPPER) | (mt[0] & LOWER);
            mt[MT_N - 1] = mt[MT_M - 1] ^ (y >> 1) ^ MAG01[(y & 1) as usize];
            self.mti = 0;
        }
        let mut y = self.mt[self.mti];
        self.mti += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// CPython's `random.random()`: 53 random bits in `[0, 1)`.
    pub fn random(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }
}

/// NAB's `random` detector (seeded per series, as NAB seeds it per file).
#[derive(Debug, Clone)]
pub struct RandomDetector {
    rng: Box<Mt19937>,
}

impl RandomDetector {
    pub fn new(seed: u32) -> Self {
        RandomDetector {
            rng: Box::new(Mt19937::from_python_seed(seed)),
        }
    }
}

impl Detector for RandomDetector {
    fn update(&mut self, _ts_ms: i64, value: f64) -> f64 {
        if !usable(value) {
            return 0.0;
        }
        // random.uniform(0, 1) == 0 + (1 - 0) * random()
        py2_str_round(self.rng.random())
    }
    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + std::mem::size_of::<Mt19937>()
    }
    fn name(&self) -> &'static str {
        "random"
    }
}

/// Complementary error function, accurate to a few ulps over the whole real line
/// (Taylor series of erf below 2, Lentz continued fraction above).
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;
    if x < 2.0 {
        // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
        let x2 = x * x;
        let mut term = x; // x^(2n+1) (-1)^n / n!
        let mut sum = x;
        let mut n = 0.0f64;
        loop {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() || n > 200.0 {
                break;
            }
        }
        return 1.0 - FRAC_2_SQRT_PI * sum;
    }
    if x > 27.3 {
        return 0.0;
    }
    // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
    // evaluated as K = x + a1/(x + a2/(x + ...)), a_k = k/2, with the modified Lentz method.
    let tiny = 1e-300;
    let mut f = x;
    let mut c = x;
    let mut d = 0.0;
    for k in 1..200 {
        let a = k as f64 * 0.5;
        d = x + a * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = x + a / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / (std::f64::consts::PI.sqrt() * f)
}

/// Upper tail probability of the standard normal, `Q(z) = P(Z > z)`.
pub fn normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// NAB's `windowedGaussian` detector (window 6400, step 100, as tuned by NAB).
#[derive(Debug, Clone)]
pub struct WindowedGaussian {
    window: Vec<f64>,
    step: Vec<f64>,
    mean: f64,
    std: f64,
}

impl WindowedGaussian {
    pub const WINDOW: usize = 6400;
    pub const STEP: usize = 100;

    pub fn new() -> Self {
        WindowedGaussian {
            window: Vec::new(),
            step: Vec::new(),
            mean: 0.0,
            std: 1.0,
        }
    }

    fn update_window(&mut self) {
        let n = self.window.len() as f64;
        let mean = self.window.iter().sum::<f64>() / n;
        let var = self
            .window
            .iter()
            .map(|x| (x - mean) * (x - mean))
            .sum::<f64>()
            / n;
        self.mean = mean;
        self.std = var.sqrt();
        if self.std == 0.0 {
            self.std = 0.000001;
        }
    }
}

impl Default for WindowedGaussian {
    fn default() -> Self {
        Self::new()
    }
}

impl Detector for WindowedGaussian {
    fn update(&mut self, _ts_ms: i64, value: f64) -> f64 {
        if !usable(value) {
            return 0.0;
        }
        let mut score = 0.0;
        if !self.window.is_empty() {
            let x = if value < self.mean {
                2.0 * self.mean - value
            } else {
                value
            };
            score = py2_str_round(1.0 - normal_tail((x - self.mean) / self.std));
        }
        if self.window.len() < Self::WINDOW {
            self.window.push(value);
            self.update_window();
        } else {
            self.step.push(value);
            if self.step.len() == Self::STEP {
                self.window.drain(..Self::STEP);
                self.window.append(&mut self.step);
                self.update_window();
            }
        }
        score
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + (self.window.capacity() + self.step.capacity()) * std::mem::size_of::<f64>()
    }

    fn name(&self) -> &'static str {
        "windowedGaussian"
    }
}
