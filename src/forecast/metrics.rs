//! The forecaster's own figures (`mcpwatch_forecast_…`): what ran, why it fell back, how long
//! inference took, and the rolling error of matured forecasts per model.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// Labels of a forecast count: the version that ran and why it was not the routed one.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForecastLabels {
    /// The model version that produced the numbers.
    pub model_version: String,
    /// `none`, or the [`FallbackReason`](super::FallbackReason) code.
    pub fallback_reason: String,
}

/// Labels of a per-model gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// The model version.
    pub model_version: String,
}

/// Labels of a fallback count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The [`FallbackReason`](super::FallbackReason) code.
    pub reason: String,
}

/// Cheap to clone: every field is an `Arc` inside.
#[derive(Clone, Debug)]
pub struct ForecastMetrics {
    /// Forecasts produced, by version and fallback reason.
    pub forecasts: Family<ForecastLabels, Counter>,
    /// Forecasts that did not run the routed model, by reason.
    pub fallbacks: Family<ReasonLabels, Counter>,
    /// Duration of one ONNX call (one batch).
    pub batch_seconds: Histogram,
    /// Windows per ONNX call.
    pub batch_size: Histogram,
    /// Duration of one `forecast_all` (every service of a cycle).
    pub cycle_seconds: Histogram,
    /// 1 when ONNX Runtime is loaded.
    pub runtime_available: Gauge,
    /// 1 when the LSTM model is loaded and checked.
    pub model_loaded: Gauge,
    /// Mean absolute error of matured forecasts, rolling window, per model.
    pub mae: Family<ModelLabels, Gauge<f64, AtomicU64>>,
    /// Mean absolute scaled error (MAE / seasonal-naive MAE on the same points), per model.
    pub mase: Family<ModelLabels, Gauge<f64, AtomicU64>>,
    /// Forecast points whose actual value arrived, per model.
    pub matured_points: Family<ModelLabels, Counter>,
    /// Services forecast in the last completed cycle of the continuous loop.
    pub services: Gauge,
    /// Forecast rows written to PostgreSQL.
    pub stored: Counter,
    /// Cycles whose forecasts could not be written to PostgreSQL.
    pub store_errors: Counter,
}

impl Default for ForecastMetrics {
    fn default() -> Self {
        ForecastMetrics {
            forecasts: Family::default(),
            fallbacks: Family::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.000_02, 1.5, 32)),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 17)),
            cycle_seconds: Histogram::new(exponential_buckets(0.001, 1.5, 32)),
            runtime_available: Gauge::default(),
            model_loaded: Gauge::default(),
            mae: Family::default(),
            mase: Family::default(),
            matured_points: Family::default(),
            services: Gauge::default(),
            stored: Counter::default(),
            store_errors: Counter::default(),
        }
    }
}

impl ForecastMetrics {
    /// Registers every metric under `mcpwatch_forecast_…`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "mcpwatch_forecast_forecasts",
            "Service forecasts produced, by the model version that ran and the fallback reason (none = the routed model ran)",
            self.forecasts.clone(),
        );
        r.register(
            "mcpwatch_forecast_fallbacks",
            "Forecasts served by the baseline instead of the routed LSTM, by reason",
            self.fallbacks.clone(),
        );
        r.register_with_unit(
            "mcpwatch_forecast_batch_duration",
            "Time of one ONNX inference call",
            Unit::Seconds,
            self.batch_seconds.clone(),
        );
        r.register(
            "mcpwatch_forecast_batch_windows",
            "Service windows per ONNX inference call",
            self.batch_size.clone(),
        );
        r.register_with_unit(
            "mcpwatch_forecast_cycle_duration",
            "Time to forecast one batch of services (scaling, inference, baseline)",
            Unit::Seconds,
            self.cycle_seconds.clone(),
        );
        r.register(
            "mcpwatch_forecast_runtime_available",
            "1 when the ONNX Runtime library is loaded, 0 when forecasts fall back to the baseline for lack of it",
            self.runtime_available.clone(),
        );
        r.register(
            "mcpwatch_forecast_model_loaded",
            "1 when the LSTM model and its metadata are loaded and checked",
            self.model_loaded.clone(),
        );
        r.register(
            "mcpwatch_forecast_mae",
            "Mean absolute error of matured forecast points over the rolling window, per model version",
            self.mae.clone(),
        );
        r.register(
            "mcpwatch_forecast_mase",
            "MAE divided by the seasonal-naive MAE on the same points (below 1: better than same-time-yesterday)",
            self.mase.clone(),
        );
        r.register(
            "mcpwatch_forecast_matured_points",
            "Forecast points whose actual value has arrived, per model version",
            self.matured_points.clone(),
        );
        r.register(
            "mcpwatch_forecast_services",
            "Services forecast in the last completed cycle of the continuous loop",
            self.services.clone(),
        );
        r.register(
            "mcpwatch_forecast_stored",
            "Forecast rows written to PostgreSQL (table forecasts)",
            self.stored.clone(),
        );
        r.register(
            "mcpwatch_forecast_store_errors",
            "Forecast cycles whose rows could not be written to PostgreSQL",
            self.store_errors.clone(),
        );
    }
}
