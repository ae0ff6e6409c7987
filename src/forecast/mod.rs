//! Forecasting: the stage after [`features`](crate::features). Every active service's last 24
//! feature rows ([`FeatureEngine::window`]) go through the router, then either the ONNX LSTM
//! (run from Rust with ONNX Runtime, scaled exactly as the model's metadata prescribes) or the
//! seasonal baseline, and come out as the next 24 buckets of `total_events` with the model
//! version that produced them. The forecasts feed the hot cache (latest forecast per service),
//! the anomaly checks and `POST /plans`.
//!
//! - [`config`]: `[forecast]` settings ([`ForecastConfig`]) and their validation.
//! - [`metadata`]: the model's JSON metadata, checked against the engine's features; scaling.
//! - [`onnx`]: locating and loading ONNX Runtime; one [`onnx::LstmSession`] per worker.
//! - [`baseline`]: recent-24-bucket statistics with daily seasonality.
//! - [`router`]: context (`service_type`, `time_slot`, `runtime_env`) → model version.
//! - [`policy`]: weight, clamps and smoothing of a forecast before it becomes a plan; the
//!   forecast anomaly check (z-score against the service's history).
//! - [`metrics`]: `mcpwatch_forecast_…`; [`accuracy`]: rolling MAE/MASE of matured forecasts.
//! - [`eval`] (`mcpwatch eval forecast`) and [`bench`] (`mcpwatch bench forecast`).
//!
//! Fallback rules (each logged once per reason, counted in `mcpwatch_forecast_fallbacks`, and
//! stated in every affected [`ForecastOutput`]: `model_version = "baseline_seasonal_v1"` plus
//! [`ForecastOutput::fallback_reason`]): no ONNX Runtime library, a missing or invalid model, a
//! service with less than `min_history_buckets` closed buckets, or a failed inference call.
//! A route naming a non-LSTM version runs the baseline under that version's name, which is not
//! a fallback.

#![warn(missing_docs)]

pub mod accuracy;
pub mod baseline;
pub mod bench;
pub mod config;
pub mod cycle;
pub mod eval;
pub mod metadata;
pub mod metrics;
pub mod onnx;
pub mod policy;
pub mod router;
pub mod store;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use accuracy::{AccuracyTracker, ModelAccuracy};
pub use baseline::{baseline_forecast, season_buckets, BASELINE_VERSION};
pub use bench::{run_bench, BenchReport};
pub use config::ForecastConfig;
pub use cycle::{run_cycles, ForecastCycleArgs};
pub use eval::{run_eval, EvalOptions, EvalReport};
pub use metadata::ModelMetadata;
pub use metrics::ForecastMetrics;
pub use onnx::{LstmSession, OnnxRuntime};
pub use router::{Engine, ForecastContext, Route, Router, RuntimeEnv, ServiceType, TimeSlot};
pub use store::ForecastStore;

use crate::features::names::{F_LAG1_EVENTS, F_LAG24_EVENTS};
use crate::features::{FeatureEngine, FeatureVector, WINDOW_ROWS};

/// Errors of the forecast stage. Runtime and model problems are turned into baseline
/// fallbacks by [`Forecaster`]; they surface as errors only from the loaders themselves.
#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    /// A `[forecast]` setting is wrong.
    #[error("invalid setting `{key}`: {problem}\n  fix: {fix}")]
    Config {
        /// The key, e.g. `forecast.batch_size`.
        key: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// No ONNX Runtime library where it was looked for.
    #[error("onnx runtime library not found ({source_of_path}: {}); run `make ort` (fetches it into ./lib), or set forecast.ort_library / ORT_DYLIB_PATH to libonnxruntime.so", display_paths(.searched))]
    RuntimeMissing {
        /// The paths or directories looked at.
        searched: Vec<PathBuf>,
        /// Where the path came from.
        source_of_path: &'static str,
    },
    /// The library exists but could not be loaded or initialised.
    #[error("onnx runtime library {} could not be loaded: {problem}; use ONNX Runtime 1.31 (`make ort`)", .library.display())]
    Runtime {
        /// The library.
        library: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// A model file is missing or unreadable.
    #[error("model file {}: {source}; set forecast.model to the metadata JSON shipped in models/ (its .onnx must sit next to it)", .path.display())]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The metadata JSON does not fit the engine or the graph.
    #[error("model metadata {}: field `{field}` {problem}\n  fix: {fix}", .path.display())]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// The offending field.
        field: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// The ONNX graph does not have the interface the forecaster feeds.
    #[error("model graph {}: {field} {problem}\n  fix: export the model with training/train.py (one float32 input [batch, 24, 82], one float32 output [batch, 24])", .path.display())]
    Graph {
        /// The .onnx file.
        path: PathBuf,
        /// The offending part.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// An inference call failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// Reading an evaluation CSV failed.
    #[error(transparent)]
    Features(#[from] crate::features::FeatureError),
}

fn display_paths(p: &[PathBuf]) -> String {
    p.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a forecast did not come from the routed LSTM. Its [`as_str`](Self::as_str) code is the
/// machine-readable `fallback_reason` of outputs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// No ONNX Runtime library found.
    RuntimeMissing,
    /// The library was found but failed to load.
    RuntimeError,
    /// The model's metadata or graph file is missing.
    ModelMissing,
    /// The model does not fit the engine (features, shapes, scalers, bucket width).
    ModelInvalid,
    /// The service has too few closed buckets for the LSTM window.
    ShortHistory,
    /// The inference call failed.
    InferenceFailed,
}

impl FallbackReason {
    /// The code used in outputs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::RuntimeMissing => "runtime_missing",
            FallbackReason::RuntimeError => "runtime_error",
            FallbackReason::ModelMissing => "model_missing",
            FallbackReason::ModelInvalid => "model_invalid",
            FallbackReason::ShortHistory => "short_history",
            FallbackReason::InferenceFailed => "inference_failed",
        }
    }

    /// A short human phrase.
    pub fn describe(self) -> &'static str {
        match self {
            FallbackReason::RuntimeMissing => "onnx runtime library not found",
            FallbackReason::RuntimeError => "onnx runtime library failed to load",
            FallbackReason::ModelMissing => "model file missing",
            FallbackReason::ModelInvalid => "model does not match the feature engine",
            FallbackReason::ShortHistory => "too little history for the model window",
            FallbackReason::InferenceFailed => "inference call failed",
        }
    }

    fn of(e: &ForecastError) -> FallbackReason {
        match e {
            ForecastError::RuntimeMissing { .. } => FallbackReason::RuntimeMissing,
            ForecastError::Runtime { .. } => FallbackReason::RuntimeError,
            ForecastError::ModelFile { .. } => FallbackReason::ModelMissing,
            ForecastError::Inference(_) => FallbackReason::InferenceFailed,
            _ => FallbackReason::ModelInvalid,
        }
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the forecaster needs of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastInput {
    /// The service.
    pub service_id: Arc<str>,
    /// The routing context.
    pub context: ForecastContext,
    /// The last up-to-24 feature vectors, oldest first ([`FeatureEngine::window`]).
    pub window: Vec<FeatureVector>,
    /// Recent target values, oldest first, one per bucket; the last is the newest closed
    /// bucket's. The baseline reads it (a day or more gives it seasonality).
    pub history: Vec<f64>,
    /// Closed buckets the service has had ([`ServiceState::rows`](crate::features::ServiceState::rows)).
    pub rows: u64,
    /// Start of the newest closed bucket, epoch ms.
    pub last_bucket_ms: i64,
}

impl ForecastInput {
    /// Gathers a service's input from the engine: its window, and as history the last
    /// `min(rows, 48)` target values, recovered exactly from the window's `lag24_events` /
    /// `lag1_events` columns and the newest row. `None` if the service is unknown or has no
    /// closed bucket.
    pub fn from_engine(
        engine: &FeatureEngine,
        service_id: &str,
        context: ForecastContext,
    ) -> Option<ForecastInput> {
        let state = engine.state(service_id)?;
        let last = state.last_row()?;
        let window = state.window();
        let rows = state.rows();
        let history = history_from_window(&window, rows, last.total_events);
        Some(ForecastInput {
            service_id: Arc::from(service_id),
            context,
            window,
            history,
            rows,
            last_bucket_ms: state.last_bucket_start_ms()?,
        })
    }
}

/// The target values a window implies, oldest first: `lag24_events` of row `k` is the value 24
/// buckets before it (used only where that bucket existed: `rows` counts every closed bucket),
/// `lag1_events` of row `k` is row `k − 1`'s, and `newest` is the last row's.
pub fn history_from_window(window: &[FeatureVector], rows: u64, newest: f64) -> Vec<f64> {
    let n = window.len();
    if n == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(2 * n);
    // Absolute index of window row 0 is rows - n; lag24 of row k is index rows - n + k - 24.
    let first = rows as i64 - n as i64;
    if n == WINDOW_ROWS {
        for (k, row) in window.iter().enumerate() {
            if first + k as i64 - 24 >= 0 {
                out.push(row[F_LAG24_EVENTS]);
            }
        }
    }
    for row in &window[1..] {
        out.push(row[F_LAG1_EVENTS]);
    }
    out.push(newest);
    out
}

/// One service's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastOutput {
    /// The service.
    #[serde(serialize_with = "serialize_arc_str")]
    pub service_id: Arc<str>,
    /// The model version that produced `values` (the routed one, or
    /// [`BASELINE_VERSION`] on a fallback).
    pub model_version: String,
    /// The version the router chose.
    pub routed_version: String,
    /// Why the routed LSTM did not run, if it did not.
    pub fallback_reason: Option<FallbackReason>,
    /// Start of the first forecast bucket, epoch ms (the bucket after the newest closed one).
    pub first_bucket_ms: i64,
    /// Bucket width, ms.
    pub step_ms: i64,
    /// Forecast target values, one per bucket.
    pub values: Vec<f64>,
}

fn serialize_arc_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

/// Why the LSTM cannot run at all.
#[derive(Debug, Clone)]
struct Unavailable {
    reason: FallbackReason,
    message: String,
}

/// The loaded LSTM: metadata and one session per worker.
struct LstmModel {
    meta: ModelMetadata,
    /// One ONNX session per inference worker; worker `i` locks only `sessions[i]`, so the lock
    /// is uncontended unless two cycles overlap. Owned by the forecaster.
    sessions: Vec<Mutex<LstmSession>>,
}

struct Inner {
    config: ForecastConfig,
    router: Router,
    step_ms: i64,
    season: usize,
    /// The LSTM, or why it is unavailable (decided once at start).
    lstm: Result<LstmModel, Unavailable>,
    metrics: ForecastMetrics,
    /// Fallback reasons already logged (each is logged once). Owned by the forecaster.
    logged: Mutex<HashSet<FallbackReason>>,
}

/// Forecasts batches of services: routing, LSTM inference on the blocking pool with one session
/// per worker, baseline fallbacks. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct Forecaster {
    inner: Arc<Inner>,
}

impl fmt::Debug for Forecaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forecaster")
            .field("config", &self.inner.config)
            .field("lstm", &self.lstm_status())
            .finish()
    }
}

/// Horizon of the baseline when no model says otherwise.
pub const DEFAULT_HORIZON: usize = 24;

impl Forecaster {
    /// Builds the forecaster. Only a bad `[forecast]` setting is an error: a missing runtime
    /// library or model makes every LSTM route fall back to the baseline (logged once, gauges
    /// `mcpwatch_forecast_runtime_available` / `…_model_loaded` at 0).
    pub fn new(
        config: ForecastConfig,
        bucket_width_secs: u64,
        metrics: ForecastMetrics,
    ) -> Result<Forecaster, ForecastError> {
        let router = config.router()?;
        let lstm = if router.uses_lstm() {
            Self::load_lstm(&config, bucket_width_secs, &metrics)
        } else {
            Err(Unavailable {
                reason: FallbackReason::ModelMissing,
                message: "no route names an LSTM model".into(),
            })
        };
        let logged = Mutex::new(HashSet::new());
        if let Err(u) = &lstm {
            if router.uses_lstm() {
                tracing::warn!(
                    reason = u.reason.as_str(),
                    "forecasts fall back to the baseline ({BASELINE_VERSION}): {}",
                    u.message
                );
                logged
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(u.reason);
            }
        }
        Ok(Forecaster {
            inner: Arc::new(Inner {
                config,
                router,
                step_ms: bucket_width_secs as i64 * 1000,
                season: season_buckets(bucket_width_secs),
                lstm,
                metrics,
                logged,
            }),
        })
    }

    fn load_lstm(
        config: &ForecastConfig,
        bucket_width_secs: u64,
        metrics: &ForecastMetrics,
    ) -> Result<LstmModel, Unavailable> {
        let fail = |e: ForecastError| Unavailable {
            reason: FallbackReason::of(&e),
            message: e.to_string(),
        };
        // The metadata first: checking it needs no runtime, so a bad model is named as such
        // on any machine.
        let meta = ModelMetadata::load(&config.model).map_err(fail)?;
        meta.check_bucket_width(bucket_width_secs).map_err(fail)?;
        let runtime = OnnxRuntime::load(config.ort_library.as_deref()).map_err(fail)?;
        metrics.runtime_available.set(1);
        let mut sessions = Vec::with_capacity(config.workers);
        for _ in 0..config.workers {
            let s = LstmSession::open(&runtime, &meta, config.intra_threads).map_err(fail)?;
            sessions.push(Mutex::new(s));
        }
        metrics.model_loaded.set(1);
        tracing::info!(
            model = %meta.name,
            graph = %meta.onnx_path.display(),
            library = %runtime.library().display(),
            workers = config.workers,
            "LSTM forecaster ready"
        );
        Ok(LstmModel { meta, sessions })
    }

    /// `None` when the LSTM is ready; else the fallback reason and the full message (which
    /// names the file, field and fix).
    pub fn lstm_status(&self) -> Option<(FallbackReason, &str)> {
        match &self.inner.lstm {
            Ok(_) => None,
            Err(u) => Some((u.reason, u.message.as_str())),
        }
    }

    /// The loaded model's metadata, if any.
    pub fn model(&self) -> Option<&ModelMetadata> {
        self.inner.lstm.as_ref().ok().map(|m| &m.meta)
    }

    /// The config in force.
    pub fn config(&self) -> &ForecastConfig {
        &self.inner.config
    }

    /// The metrics it updates.
    pub fn metrics(&self) -> &ForecastMetrics {
        &self.inner.metrics
    }

    /// Forecasts every input: routes them, runs the LSTM ones in batches of
    /// `forecast.batch_size` on `forecast.workers` blocking threads (one ONNX session each), and
    /// the rest with the baseline. The async runtime never runs inference itself. Outputs are
    /// in input order.
    pub async fn forecast_all(&self, inputs: Vec<ForecastInput>) -> Vec<ForecastOutput> {
        let started = Instant::now();
        let inputs = Arc::new(inputs);
        let plan = self.plan(&inputs);
        let workers = match &self.inner.lstm {
            Ok(m) => m
                .sessions
                .len()
                .min(plan.lstm.len().div_ceil(self.inner.config.batch_size))
                .max(1),
            Err(_) => 1,
        };
        let chunks: Vec<Vec<usize>> = plan
            .lstm
            .chunks(self.inner.config.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        let mut per_worker: Vec<Vec<Vec<usize>>> = vec![Vec::new(); workers];
        for (i, c) in chunks.into_iter().enumerate() {
            per_worker[i % workers].push(c);
        }
        let mut tasks = Vec::with_capacity(workers + 1);
        for (w, chunks) in per_worker.into_iter().enumerate() {
            if chunks.is_empty() {
                continue;
            }
            let this = self.clone();
            let inputs = inputs.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                chunks
                    .iter()
                    .flat_map(|c| this.run_lstm_chunk(w, &inputs, c))
                    .collect::<Vec<_>>()
            }));
        }
        let this = self.clone();
        let baseline = plan.baseline;
        let inputs2 = inputs.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            baseline
                .into_iter()
                .map(|(i, route, reason)| (i, this.baseline_output(&inputs2[i], &route, reason)))
                .collect()
        }));
        let mut slots: Vec<Option<ForecastOutput>> = vec![None; inputs.len()];
        for t in tasks {
            match t.await {
                Ok(done) => {
                    for (i, o) in done {
                        slots[i] = Some(o);
                    }
                }
                Err(e) => tracing::error!("forecast worker failed: {e}"),
            }
        }
        // A worker that panicked leaves holes: serve those from the baseline.
        let out: Vec<ForecastOutput> = slots
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                o.unwrap_or_else(|| {
                    let route = self.inner.router.route(&inputs[i].context).clone();
                    self.baseline_output(&inputs[i], &route, Some(FallbackReason::InferenceFailed))
                })
            })
            .collect();
        self.inner
            .metrics
            .cycle_seconds
            .observe(started.elapsed().as_secs_f64());
        out
    }

    /// [`forecast_all`](Self::forecast_all) on the calling thread with worker 0's session (for
    /// the evaluation and benchmarks, or callers already on a blocking thread).
    pub fn forecast_blocking(&self, inputs: &[ForecastInput]) -> Vec<ForecastOutput> {
        let started = Instant::now();
        let plan = self.plan(inputs);
        let mut slots: Vec<Option<ForecastOutput>> = vec![None; inputs.len()];
        for c in plan.lstm.chunks(self.inner.config.batch_size) {
            for (i, o) in self.run_lstm_chunk(0, inputs, c) {
                slots[i] = Some(o);
            }
        }
        for (i, route, reason) in plan.baseline {
            slots[i] = Some(self.baseline_output(&inputs[i], &route, reason));
        }
        self.inner
            .metrics
            .cycle_seconds
            .observe(started.elapsed().as_secs_f64());
        slots
            .into_iter()
            .map(|o| o.expect("every input planned"))
            .collect()
    }

    /// Splits inputs into LSTM jobs and baseline jobs (with their fallback reason).
    fn plan(&self, inputs: &[ForecastInput]) -> Plan {
        let mut plan = Plan::default();
        let min_rows = self
            .inner
            .config
            .min_history_buckets
            .max(WINDOW_ROWS as u64);
        for (i, input) in inputs.iter().enumerate() {
            let route = self.inner.router.route(&input.context);
            let reason = match (route.engine, &self.inner.lstm) {
                (Engine::Baseline, _) => None,
                (Engine::Lstm, Err(u)) => Some(u.reason),
                (Engine::Lstm, Ok(_)) => {
                    if input.window.len() < WINDOW_ROWS || input.rows < min_rows {
                        Some(FallbackReason::ShortHistory)
                    } else {
                        plan.lstm.push(i);
                        continue;
                    }
                }
            };
            plan.baseline.push((i, route.clone(), reason));
        }
        plan
    }

    /// Runs one chunk of LSTM jobs on worker `w`'s session.
    fn run_lstm_chunk(
        &self,
        w: usize,
        inputs: &[ForecastInput],
        chunk: &[usize],
    ) -> Vec<(usize, ForecastOutput)> {
        let Ok(model) = &self.inner.lstm else {
            return Vec::new();
        };
        let windows: Vec<&[FeatureVector]> = chunk.iter().map(|&i| &inputs[i].window[..]).collect();
        let started = Instant::now();
        let result = {
            let mut session = model.sessions[w % model.sessions.len()]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            session.forecast(&model.meta, &windows)
        };
        let m = &self.inner.metrics;
        m.batch_seconds.observe(started.elapsed().as_secs_f64());
        m.batch_size.observe(chunk.len() as f64);
        match result {
            Ok(values) => chunk
                .iter()
                .zip(values)
                .map(|(&i, values)| {
                    let input = &inputs[i];
                    let route = self.inner.router.route(&input.context);
                    m.forecasts
                        .get_or_create(&metrics::ForecastLabels {
                            model_version: route.version.clone(),
                            fallback_reason: "none".into(),
                        })
                        .inc();
                    (
                        i,
                        ForecastOutput {
                            service_id: input.service_id.clone(),
                            model_version: route.version.clone(),
                            routed_version: route.version.clone(),
                            fallback_reason: None,
                            first_bucket_ms: input.last_bucket_ms + self.inner.step_ms,
                            step_ms: self.inner.step_ms,
                            values,
                        },
                    )
                })
                .collect(),
            Err(e) => {
                self.log_once(FallbackReason::InferenceFailed, &e.to_string());
                chunk
                    .iter()
                    .map(|&i| {
                        let route = self.inner.router.route(&inputs[i].context).clone();
                        (
                            i,
                            self.baseline_output(
                                &inputs[i],
                                &route,
                                Some(FallbackReason::InferenceFailed),
                            ),
                        )
                    })
                    .collect()
            }
        }
    }

    fn log_once(&self, reason: FallbackReason, message: &str) {
        let mut logged = self.inner.logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged.insert(reason) {
            tracing::warn!(
                reason = reason.as_str(),
                "forecasts fall back to the baseline ({BASELINE_VERSION}): {message}"
            );
        }
    }

    /// The baseline's forecast for an input; `reason` set when it stands in for the LSTM.
    fn baseline_output(
        &self,
        input: &ForecastInput,
        route: &Route,
        reason: Option<FallbackReason>,
    ) -> ForecastOutput {
        let horizon = self.model().map_or(DEFAULT_HORIZON, |m| m.horizon);
        let values = baseline_forecast(&input.history, self.inner.season, horizon);
        let m = &self.inner.metrics;
        let model_version = match reason {
            None => route.version.clone(),
            Some(r) => {
                if r == FallbackReason::ShortHistory {
                    self.log_once(
                        r,
                        &format!(
                            "service `{}` has {} closed buckets, the LSTM needs {} (forecast.min_history_buckets)",
                            input.service_id,
                            input.rows,
                            self.inner.config.min_history_buckets.max(WINDOW_ROWS as u64)
                        ),
                    );
                }
                m.fallbacks
                    .get_or_create(&metrics::ReasonLabels {
                        reason: r.as_str().into(),
                    })
                    .inc();
                BASELINE_VERSION.to_string()
            }
        };
        m.forecasts
            .get_or_create(&metrics::ForecastLabels {
                model_version: model_version.clone(),
                fallback_reason: reason.map_or("none", FallbackReason::as_str).into(),
            })
            .inc();
        ForecastOutput {
            service_id: input.service_id.clone(),
            model_version,
            routed_version: route.version.clone(),
            fallback_reason: reason,
            first_bucket_ms: input.last_bucket_ms + self.inner.step_ms,
            step_ms: self.inner.step_ms,
            values,
        }
    }
}

/// Which inputs go where.
#[derive(Default)]
struct Plan {
    lstm: Vec<usize>,
    baseline: Vec<(usize, Route, Option<FallbackReason>)>,
}
