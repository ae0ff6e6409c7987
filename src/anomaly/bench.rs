//! `mcpwatch bench anomaly`: the per-point cost and per-series memory of the detectors, measured
//! the way the daemon uses them — one detector per series, every series fed one point per round
//! (as buckets close), so the working set is the whole fleet's state and cache misses count.

use std::fmt;
use std::time::Instant;

use serde::Serialize;

use crate::anomaly::detector::{build_detector, Detector};
use crate::anomaly::AnomalyConfig;

/// Points fed per series (at least; more when there are few series).
const MIN_ROUNDS: usize = 200;
/// Total points aimed at per detector kind.
const TARGET_POINTS: usize = 20_000_000;

/// Cost of one detector kind.
#[derive(Debug, Clone, Serialize)]
pub struct DetectorBench {
    pub detector: String,
    pub series: usize,
    pub points: usize,
    /// Wall-clock seconds of the feeding loop.
    pub wall_seconds: f64,
    /// CPU seconds of the benchmarking thread, when the platform reports them (Linux).
    pub cpu_seconds: Option<f64>,
    /// Nanoseconds per point: CPU time when known (robust on a shared machine), else wall time.
    pub ns_per_point: f64,
    pub wall_ns_per_point: f64,
    /// Largest `state_bytes` over the series (the detector's whole state, one allocation).
    pub bytes_per_series: usize,
    /// Share of the scores that were exactly within `[0, 1]` (must be 1).
    pub scores_in_range: f64,
}

/// Outcome of the benchmark; `Display` ends with `ns_per_point=X bytes_per_series=Y` for the
/// default detector (`mcpwatch`).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub series: usize,
    pub detectors: Vec<DetectorBench>,
}

impl BenchReport {
    /// The default detector's figures (the last line).
    pub fn headline(&self) -> &DetectorBench {
        self.detectors.last().expect("at least one detector")
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.detectors {
            writeln!(
                f,
                "detector={} series={} points={} cpu_seconds={} wall_seconds={:.3} ns_per_point={:.1} wall_ns_per_point={:.1} bytes_per_series={} scores_in_range={}",
                d.detector,
                d.series,
                d.points,
                d.cpu_seconds.map_or("n/a".to_string(), |s| format!("{s:.3}")),
                d.wall_seconds,
                d.ns_per_point,
                d.wall_ns_per_point,
                d.bytes_per_series,
                d.scores_in_range
            )?;
        }
        let h = self.headline();
        write!(
            f,
            "ns_per_point={:.1} bytes_per_series={}",
            h.ns_per_point, h.bytes_per_series
        )
    }
}

/// A cheap deterministic metric generator: daily seasonality, noise, rare spikes and level
/// shifts, different per series (so detectors do real work, not a constant).
#[derive(Debug, Clone, Copy)]
struct SyntheticSeries {
    state: u64,
    base: f64,
    amp: f64,
    phase: f64,
    shift: f64,
}

impl SyntheticSeries {
    fn new(i: usize) -> Self {
        let mut s = SyntheticSeries {
            state: 0x9E37_79B9_7F4A_7C15 ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
            base: 0.0,
            amp: 0.0,
            phase: 0.0,
            shift: 0.0,
        };
        s.base = 10.0 + 100.0 * s.uniform();
        s.amp = s.base * 0.3 * s.uniform();
        s.phase = std::f64::consts::TAU * s.uniform();
        s
    }

    fn uniform(&mut self) -> f64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn value(&mut self, t: usize) -> f64 {
        let day = (t % 24) as f64 / 24.0 * std::f64::consts::TAU;
        let u = self.uniform();
        if u < 0.001 {
            self.shift += self.base * 0.5 * (self.uniform() - 0.5);
        }
        let spike = if u > 0.998 { self.base } else { 0.0 };
        self.base
            + self.shift
            + self.amp * (day + self.phase).sin()
            + self.base * 0.05 * (u - 0.5)
            + spike
    }
}

/// CPU time (user + system) of the calling thread, from `/proc/thread-self/stat` (Linux; clock
/// ticks of 1/100 s).
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn bench_one(name: &str, series: usize) -> DetectorBench {
    let cfg = AnomalyConfig::default();
    let mut detectors: Vec<Box<dyn Detector>> = (0..series)
        .map(|_| build_detector(name, &cfg).expect("registered detector"))
        .collect();
    let mut gens: Vec<SyntheticSeries> = (0..series).map(SyntheticSeries::new).collect();
    let rounds = MIN_ROUNDS.max(TARGET_POINTS / series.max(1));
    const HOUR_MS: i64 = 3_600_000;
    let t0: i64 = 1_700_000_000_000;
    let mut in_range = 0usize;
    let cpu_start = thread_cpu_seconds();
    let started = Instant::now();
    for t in 0..rounds {
        let ts = t0 + t as i64 * HOUR_MS;
        for (d, g) in detectors.iter_mut().zip(gens.iter_mut()) {
            let s = d.update(ts, g.value(t));
            in_range += usize::from((0.0..=1.0).contains(&s));
        }
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = match (cpu_start, thread_cpu_seconds()) {
        (Some(a), Some(b)) if b > a => Some(b - a),
        _ => None,
    };
    let points = rounds * series;
    let per_point = |s: f64| s * 1e9 / points.max(1) as f64;
    let bytes = detectors.iter().map(|d| d.state_bytes()).max().unwrap_or(0);
    DetectorBench {
        detector: name.to_string(),
        series,
        points,
        wall_seconds,
        cpu_seconds,
        ns_per_point: per_point(cpu_seconds.unwrap_or(wall_seconds)),
        wall_ns_per_point: per_point(wall_seconds),
        bytes_per_series: bytes,
        scores_in_range: in_range as f64 / points.max(1) as f64,
    }
}

/// Runs the benchmark over `series` concurrent series for the seed detector (`zscore`) and the
/// default one (`mcpwatch`, reported last).
pub fn run_bench(series: usize) -> BenchReport {
    let series = series.max(1);
    BenchReport {
        series,
        detectors: vec![bench_one("zscore", series), bench_one("mcpwatch", series)],
    }
}
