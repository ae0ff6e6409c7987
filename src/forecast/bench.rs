//! `mcpwatch bench forecast --services N`: one full forecasting cycle as the daemon runs it.
//!
//! A [`FeatureEngine`] (buckets of the width the model was trained on: 1 h for the default
//! `lstm_total_events_h1`, 30 min for `…_v2`) is filled with `history` synthetic
//! closed buckets per service (daily seasonality, per-service level and noise; not timed).
//! A cycle is then timed end to end: gathering every service's input from the engine
//! ([`ForecastInput::from_engine`]: the 24 × 82 window and the target history, split over
//! `workers` blocking threads) and [`Forecaster::forecast_all`] (scaling, batched ONNX
//! inference on one session per worker, inverse scaling). One warm-up cycle runs first; the
//! report gives the median of the timed cycles.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};

use super::{
    season_buckets, ForecastConfig, ForecastContext, ForecastError, ForecastInput, ForecastMetrics,
    Forecaster, ModelMetadata,
};
use crate::features::{FeatureEngine, FeaturesConfig, ManualClock, RawRow};

/// Figures of one bench run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// Services forecast per cycle.
    pub services: usize,
    /// Closed buckets per service.
    pub history: usize,
    /// Bucket width, seconds (the model's `row_interval_minutes`).
    pub bucket_secs: u64,
    /// Windows per ONNX call.
    pub batch: usize,
    /// Inference workers (sessions).
    pub workers: usize,
    /// Timed cycles.
    pub cycles: usize,
    /// Median time to gather the inputs, ms.
    pub gather_ms: f64,
    /// Median time of `forecast_all`, ms.
    pub infer_ms: f64,
    /// Median full cycle, ms.
    pub cycle_ms: f64,
    /// Fastest and slowest cycle, ms.
    pub cycle_range_ms: (f64, f64),
    /// Forecasts of the last cycle that ran the LSTM.
    pub lstm_forecasts: usize,
    /// Forecasts of the last cycle that fell back, with the first reason.
    pub fallbacks: usize,
    /// The first fallback reason, if any.
    pub fallback_reason: Option<String>,
    /// The ONNX Runtime library.
    pub runtime: String,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bench forecast: services={} history={} buckets of {} s, workers={} (one ONNX session each, intra-op threads 1), runtime {}",
            self.services, self.history, self.bucket_secs, self.workers, self.runtime
        )?;
        writeln!(
            f,
            "last cycle: lstm={} fallback={}{}",
            self.lstm_forecasts,
            self.fallbacks,
            self.fallback_reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )?;
        writeln!(
            f,
            "median of {} cycles: gather_ms={:.1} forecast_all_ms={:.1}; cycle range {:.1}..{:.1} ms",
            self.cycles, self.gather_ms, self.infer_ms, self.cycle_range_ms.0, self.cycle_range_ms.1
        )?;
        write!(f, "cycle_ms={:.1} batch={}", self.cycle_ms, self.batch)
    }
}

/// Synthetic closed buckets of one service: a daily cycle around a per-service level.
fn synthetic_rows(
    rng: &mut impl Rng,
    start_ms: i64,
    n: usize,
    width_secs: u64,
) -> Vec<(i64, RawRow)> {
    let per_day = season_buckets(width_secs) as f64;
    let level = rng.random_range(5.0..400.0);
    let amp = rng.random_range(0.1..0.8);
    let phase = rng.random_range(0.0..std::f64::consts::TAU);
    let machines = rng.random_range(2.0..60.0_f64).round();
    let mut out: Vec<(i64, RawRow)> = Vec::with_capacity(n);
    for k in 0..n {
        let day = std::f64::consts::TAU * k as f64 / per_day;
        let noise = rng.random_range(-0.15..0.15);
        let events = (level * (1.0 + amp * (day + phase).sin() + noise))
            .max(0.0)
            .round();
        let cpu =
            (0.3 + 0.3 * (day + phase).sin().abs() + rng.random_range(-0.05..0.05)).clamp(0.0, 1.0);
        let mem = (0.4 + rng.random_range(-0.05..0.05_f64)).clamp(0.0, 1.0);
        let adds = (events * 0.2).round();
        let aggs = [
            machines,
            adds,
            (events * 0.1).round(),
            events - adds - (events * 0.1).round(),
            cpu,
            mem,
            0.05,
            0.04,
            (cpu - 0.1).max(0.0),
            (cpu + 0.1).min(1.0),
            (mem - 0.05).max(0.0),
            (mem + 0.05).min(1.0),
            (machines / 4.0).ceil(),
            2.0,
        ];
        let row = RawRow::from_values(events, &aggs, out.last().map(|(_, r)| r));
        out.push((start_ms + k as i64 * width_secs as i64 * 1000, row));
    }
    out
}

/// Gathers every service's input, split over `threads` blocking threads.
async fn gather(
    engine: &Arc<FeatureEngine>,
    ids: &Arc<Vec<String>>,
    threads: usize,
) -> Vec<ForecastInput> {
    let per = ids.len().div_ceil(threads.max(1)).max(1);
    let mut tasks = Vec::new();
    for part in 0..ids.len().div_ceil(per) {
        let (engine, ids) = (engine.clone(), ids.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            ids[part * per..((part + 1) * per).min(ids.len())]
                .iter()
                .filter_map(|id| {
                    ForecastInput::from_engine(&engine, id, ForecastContext::default())
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::with_capacity(ids.len());
    for t in tasks {
        out.extend(t.await.unwrap_or_default());
    }
    out
}

/// Runs the bench: `services` services with `history` buckets each, `cycles` timed cycles.
pub async fn run_bench(
    config: ForecastConfig,
    services: usize,
    history: usize,
    cycles: usize,
) -> Result<BenchReport, ForecastError> {
    // The model's bucket width, so the bench measures the LSTM; the daemon's default width
    // when the metadata does not say (or cannot be read: the forecaster then falls back).
    let width = ModelMetadata::load(&config.model)
        .ok()
        .and_then(|m| m.row_interval_minutes)
        .map_or(FeaturesConfig::default().bucket_width_secs, |m| {
            u64::from(m) * 60
        });
    let start_ms = 1_767_225_600_000; // 2026-01-01T00:00Z
    let last_ms = start_ms + (history.max(1) as i64 - 1) * width as i64 * 1000;
    let fconfig = FeaturesConfig {
        bucket_width_secs: width,
        ..FeaturesConfig::default()
    };
    let mut engine = FeatureEngine::new(fconfig, Arc::new(ManualClock::new(last_ms)))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let ids: Vec<String> = (0..services).map(|i| format!("svc-{i:05}")).collect();
    for id in &ids {
        let rows = synthetic_rows(&mut rng, start_ms, history, width);
        engine.replay_buckets(id, &rows);
    }
    let engine = Arc::new(engine);
    let ids = Arc::new(ids);

    let workers = config.workers;
    let batch = config.batch_size;
    let forecaster = Forecaster::new(config.clone(), width, ForecastMetrics::default())?;
    let runtime = match forecaster.lstm_status() {
        None => super::OnnxRuntime::load(config.ort_library.as_deref())
            .map(|r| r.library().display().to_string())
            .unwrap_or_default(),
        Some((reason, _)) => format!("unavailable ({reason})"),
    };

    let mut gathers = Vec::new();
    let mut infers = Vec::new();
    let mut totals = Vec::new();
    let mut last = Vec::new();
    for c in 0..=cycles.max(1) {
        let t0 = Instant::now();
        let inputs = gather(&engine, &ids, workers).await;
        let t1 = Instant::now();
        let outputs = forecaster.forecast_all(inputs).await;
        let t2 = Instant::now();
        if c > 0 {
            gathers.push((t1 - t0).as_secs_f64() * 1e3);
            infers.push((t2 - t1).as_secs_f64() * 1e3);
            totals.push((t2 - t0).as_secs_f64() * 1e3);
        }
        last = outputs;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let lstm = last.iter().filter(|o| o.fallback_reason.is_none()).count();
    let reason = last
        .iter()
        .find_map(|o| o.fallback_reason.map(|r| r.as_str().to_string()));
    let range = (
        totals.iter().copied().fold(f64::INFINITY, f64::min),
        totals.iter().copied().fold(0.0, f64::max),
    );
    Ok(BenchReport {
        services,
        history,
        bucket_secs: width,
        batch,
        workers,
        cycles: totals.len(),
        gather_ms: median(&mut gathers),
        infer_ms: median(&mut infers),
        cycle_ms: median(&mut totals),
        cycle_range_ms: range,
        lstm_forecasts: lstm,
        fallbacks: last.len() - lstm,
        fallback_reason: reason,
        runtime,
    })
}
