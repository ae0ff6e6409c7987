//! `mcpwatch bench features`: synthetic MCP traffic through a [`FeatureEngine`], timing only
//! `observe_batch` (sample generation happens between timed batches), then the memory held per
//! service once every service has a full `history_buckets` history.
//!
//! The default stream is deliberately hard on the per-bucket path: each service's samples are
//! spread so the run itself fills the history — it spans `history_buckets + 8` buckets, which
//! with 500 samples per service is one bucket close every ~3 samples — services are interleaved
//! sample by sample (no batching benefit from runs), 2 % of samples arrive late (a quarter of
//! those beyond the lateness bound), and every service has one 3-bucket silence that is
//! gap-filled. [`BenchOptions::sample_interval_secs`] with [`BenchOptions::prewarm_history`]
//! gives the steady state instead: a full history replayed first, then samples at a realistic
//! cadence (many per bucket).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::engine::{FeatureEngine, ManualClock};
use super::{FeaturesConfig, RawRow};
use crate::sample::{Lifecycle, Origin, Sample, Status};

/// Options of [`run_bench_with`].
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Number of synthetic services.
    pub services: usize,
    /// Total samples, spread evenly over the services.
    pub samples: usize,
    /// Engine settings.
    pub config: FeaturesConfig,
    /// Samples per `observe_batch` call.
    pub batch: usize,
    /// PRNG seed (the run is deterministic).
    pub seed: u64,
    /// Seconds between two samples of one service. `None` (default): spread each service's
    /// samples over `history_buckets + 8` buckets, so the samples themselves fill the history.
    pub sample_interval_secs: Option<u64>,
    /// Replay `history_buckets` closed buckets into every service before the timed run, so
    /// memory is measured with a full history whatever the interval.
    pub prewarm_history: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            services: 10_000,
            samples: 5_000_000,
            config: FeaturesConfig::default(),
            batch: 1024,
            seed: 42,
            sample_interval_secs: None,
            prewarm_history: false,
        }
    }
}

/// Figures of one bench run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// Services simulated.
    pub services: usize,
    /// Samples fed.
    pub samples: usize,
    /// `history_buckets` of the engine.
    pub history_buckets: usize,
    /// Buckets each service's stream spans.
    pub span_buckets: u64,
    /// Seconds between two samples of one service.
    pub interval_secs: f64,
    /// Whether histories were replayed before the timed run.
    pub prewarmed: bool,
    /// Buckets closed during the timed run.
    pub buckets_closed: u64,
    /// Of which gap fills.
    pub gap_buckets: u64,
    /// Samples dropped as too late.
    pub late_dropped: u64,
    /// Fewest closed rows any service has at the end (≥ history_buckets means full histories).
    pub min_rows_per_service: u64,
    /// Wall time inside `observe_batch`.
    pub elapsed_secs: f64,
    /// CPU time of the bench thread inside `observe_batch` (Linux `/proc/thread-self/schedstat`),
    /// which, unlike wall time, does not count time other processes held the core.
    pub cpu_secs: Option<f64>,
    /// Per sample: CPU time when known, else wall time.
    pub ns_per_sample: f64,
    /// [`FeatureEngine::memory_bytes`] / services, at the end of the run.
    pub bytes_per_service: f64,
    /// Mean size of an encoded state (snapshot), over up to 1000 services.
    pub snapshot_bytes_per_service: f64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "features bench: services={} samples={} history_buckets={} span_buckets={} interval_secs={:.0} prewarmed={}",
            self.services, self.samples, self.history_buckets, self.span_buckets, self.interval_secs, self.prewarmed
        )?;
        writeln!(
            f,
            "buckets_closed={} gap_buckets={} late_dropped={} min_rows_per_service={} (after the timed run)",
            self.buckets_closed, self.gap_buckets, self.late_dropped, self.min_rows_per_service
        )?;
        let wall_ns = self.elapsed_secs * 1e9 / self.samples.max(1) as f64;
        match self.cpu_secs {
            Some(cpu) => writeln!(
                f,
                "observe: cpu_secs={cpu:.3} wall_secs={:.3} wall_ns_per_sample={wall_ns:.1} (ns_per_sample below is CPU time)",
                self.elapsed_secs
            )?,
            None => writeln!(f, "observe: wall_secs={:.3} (ns_per_sample below is wall time)", self.elapsed_secs)?,
        }
        writeln!(
            f,
            "snapshot_bytes_per_service={:.0}",
            self.snapshot_bytes_per_service
        )?;
        write!(
            f,
            "ns_per_sample={:.1} bytes_per_service={:.0}",
            self.ns_per_sample, self.bytes_per_service
        )
    }
}

/// SplitMix64: small, deterministic, good enough for synthetic traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Template {
    id: String,
    instances: Vec<String>,
    hosts: Vec<String>,
    platform: String,
    base: f64,
    phase: f64,
    offset_ms: i64,
    gap_step: usize,
}

/// `mcpwatch bench features --services N --samples M` with the default config.
pub fn run_bench(services: usize, samples: usize) -> BenchReport {
    run_bench_with(&BenchOptions {
        services,
        samples,
        ..BenchOptions::default()
    })
}

/// The bench with explicit options.
pub fn run_bench_with(opts: &BenchOptions) -> BenchReport {
    run_bench_engine(opts).0
}

/// The bench, also handing back the engine it filled (to inspect its states or memory).
pub fn run_bench_engine(opts: &BenchOptions) -> (BenchReport, FeatureEngine) {
    let services = opts.services.max(1);
    let cfg = &opts.config;
    let width_ms = cfg.bucket_width_secs as i64 * 1000;
    let lateness_ms = cfg.lateness_secs as i64 * 1000;
    let per_service = opts.samples.div_ceil(services).max(1);
    let interval_ms = match opts.sample_interval_secs {
        Some(secs) => (secs as i64 * 1000).max(1),
        None => ((cfg.history_buckets as i64 + 8) * width_ms / per_service as i64).max(1),
    };
    let span_buckets = (per_service as i64 * interval_ms).div_euclid(width_ms) + 1;
    let t0: i64 = 1_700_000_000_000 / width_ms * width_ms;
    let mut rng = Rng(opts.seed);
    const PLATFORMS: [&str; 3] = ["linux/amd64", "linux/arm64", "darwin/arm64"];
    let templates: Vec<Template> = (0..services)
        .map(|i| {
            let n_inst = 1 + rng.below(4) as usize;
            let n_hosts = 1 + rng.below(2) as usize;
            Template {
                id: format!("mcp-server-{i:06}"),
                instances: (0..n_inst)
                    .map(|k| format!("mcp-server-{i:06}-{k}"))
                    .collect(),
                hosts: (0..n_hosts)
                    .map(|k| format!("node-{:04}", (i * 7 + k) % 5000))
                    .collect(),
                platform: PLATFORMS[i % 3].to_string(),
                base: 20.0 + 200.0 * rng.unit(),
                phase: rng.unit() * std::f64::consts::TAU,
                offset_ms: rng.below(interval_ms as u64) as i64,
                gap_step: rng.below(per_service as u64) as usize,
            }
        })
        .collect();

    let clock = Arc::new(ManualClock::new(t0));
    let mut engine =
        FeatureEngine::new(cfg.clone(), clock.clone()).expect("default config is valid");
    if opts.prewarm_history {
        let h = cfg.history_buckets as i64;
        for (i, tp) in templates.iter().enumerate() {
            let rows: Vec<(i64, RawRow)> = (0..h)
                .map(|b| {
                    let start = t0 - (h - b) * width_ms;
                    let mut aggs = [0.0; 14];
                    aggs[0] = tp.instances.len() as f64;
                    aggs[4] = 0.35 + 0.1 * ((b + i as i64) % 7) as f64 / 7.0;
                    aggs[5] = 0.5;
                    aggs[12] = tp.hosts.len() as f64;
                    aggs[13] = 1.0;
                    (
                        start,
                        RawRow::from_values(tp.base * 60.0 + (b % 24) as f64, &aggs, None),
                    )
                })
                .collect();
            engine.replay_buckets(&tp.id, &rows);
        }
    }
    let gap_ms = 3 * width_ms;
    let mut batch: Vec<Sample> = Vec::with_capacity(opts.batch);
    let mut closed = Vec::new();
    let mut elapsed = 0.0f64;
    let (mut cpu_ns, mut cpu_known) = (0u64, thread_cpu_ns().is_some());
    let mut produced = 0usize;
    let mut step = 0usize;
    let mut svc = 0usize;
    while produced < opts.samples {
        batch.clear();
        while batch.len() < opts.batch && produced < opts.samples {
            let tp = &templates[svc];
            let mut ts = t0 + step as i64 * interval_ms + tp.offset_ms;
            if step >= tp.gap_step {
                ts += gap_ms;
            }
            let r = rng.unit();
            if r < 0.015 {
                ts -= (rng.unit() * lateness_ms as f64) as i64; // late, within the bound
            } else if r < 0.02 {
                ts -= lateness_ms + width_ms + (rng.unit() * width_ms as f64) as i64;
                // too late
            }
            let hour = (ts / 3_600_000 % 24) as f64;
            let daily = (std::f64::consts::TAU * hour / 24.0 + tp.phase).sin();
            let mut s = Sample::new(tp.id.clone(), ts, Origin::Mcp);
            let k = rng.below(tp.instances.len() as u64) as usize;
            s.series = k as i64;
            s.instance_id = Some(tp.instances[k].clone());
            s.host = Some(tp.hosts[k % tp.hosts.len()].clone());
            s.platform = Some(tp.platform.clone());
            s.cpu = Some((0.35 + 0.2 * daily + 0.1 * (rng.unit() - 0.5)).clamp(0.0, 1.0));
            s.memory = Some((0.5 + 0.1 * daily + 0.05 * (rng.unit() - 0.5)).clamp(0.0, 1.0));
            s.requests = Some((tp.base * (1.0 + 0.6 * daily) * (0.8 + 0.4 * rng.unit())).round());
            s.response_time_ms = Some(40.0 + 30.0 * rng.unit() + 20.0 * daily.max(0.0));
            s.errors = Some(if rng.unit() < 0.05 { 1.0 } else { 0.0 });
            s.status = Some(if rng.unit() < 0.01 {
                Status::Degraded
            } else {
                Status::Healthy
            });
            s.event = match rng.below(40) {
                0 => Some(Lifecycle::Add),
                1 => Some(Lifecycle::Remove),
                2 | 3 => Some(Lifecycle::Update),
                _ => None,
            };
            batch.push(s);
            produced += 1;
            svc += 1;
            if svc == services {
                svc = 0;
                step += 1;
            }
        }
        // Processing time: the newest sample of the batch (nothing is "from the future").
        clock.set(batch.iter().map(|s| s.ts_ms).max().unwrap_or(t0));
        let cpu0 = thread_cpu_ns();
        let start = Instant::now();
        closed.clear();
        engine.observe_batch_into(&batch, &mut closed);
        elapsed += start.elapsed().as_secs_f64();
        if let (Some(a), Some(b)) = (cpu0, thread_cpu_ns()) {
            cpu_ns += b.saturating_sub(a);
        } else {
            cpu_known = false;
        }
        std::hint::black_box(&closed);
    }
    let stats = engine.stats();
    let snap_n = services.min(1000);
    let snapshot_bytes: usize = templates[..snap_n]
        .iter()
        .filter_map(|t| engine.snapshot(&t.id))
        .map(|b| b.len())
        .sum();
    let min_rows = templates
        .iter()
        .filter_map(|t| engine.state(&t.id))
        .map(|s| s.rows())
        .min()
        .unwrap_or(0);
    let report = BenchReport {
        services,
        samples: opts.samples,
        history_buckets: cfg.history_buckets,
        span_buckets: span_buckets as u64,
        interval_secs: interval_ms as f64 / 1000.0,
        prewarmed: opts.prewarm_history,
        buckets_closed: stats.buckets_closed,
        gap_buckets: stats.gap_buckets,
        late_dropped: stats.late_dropped,
        min_rows_per_service: min_rows,
        elapsed_secs: elapsed,
        cpu_secs: cpu_known.then_some(cpu_ns as f64 / 1e9),
        ns_per_sample: if cpu_known {
            cpu_ns as f64
        } else {
            elapsed * 1e9
        } / opts.samples.max(1) as f64,
        bytes_per_service: engine.memory_bytes() as f64 / engine.len().max(1) as f64,
        snapshot_bytes_per_service: snapshot_bytes as f64 / snap_n as f64,
    };
    (report, engine)
}

/// CPU time consumed by the calling thread, in ns (Linux; `None` elsewhere).
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}
