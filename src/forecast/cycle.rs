//! The continuous forecast: every `forecast.cadence_secs`, every active service of the feature
//! engine is forecast in batches ([`Forecaster::forecast_all`]); the latest forecast of each
//! goes hot into the cache's forecast tier (where `/plans` and the query endpoints read it),
//! every forecast goes into PostgreSQL with its model version ([`ForecastStore`]), and the
//! accuracy tracker scores matured forecasts against the buckets that actually closed, per
//! model, on `/metrics` (`mcpwatch_forecast_mae`, `…_mase`).
//!
//! Sits after the features stage (it only reads the shared engine, briefly locked) and beside
//! the API (which reads what it leaves in the cache).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{
    AccuracyTracker, ForecastContext, ForecastInput, ForecastOutput, ForecastStore, Forecaster,
};
use crate::cache::{kind, CacheSender, KeySpace, Tier};
use crate::downstream::SharedEngine;

/// Matured points per model in the rolling error window (a week of hourly buckets for 60
/// services, or 10 000 points, whichever way one reads it).
const ACCURACY_WINDOW_POINTS: usize = 10_000;

/// Constructor arguments for [`run_cycles`].
pub struct ForecastCycleArgs {
    /// Shared with the API (on-demand forecasts); cheap to clone.
    pub forecaster: Forecaster,
    /// Read (briefly locked) to gather each service's 24-bucket window and history.
    pub engine: SharedEngine,
    /// Latest forecasts go to the cache's forecast tier (best effort, never blocks).
    pub cache: CacheSender,
    /// The cache's key layout.
    pub keys: KeySpace,
    /// Forecast history (None: not stored, e.g. in tests of the cache path only).
    pub store: Option<ForecastStore>,
    /// The features stage's bucket width (the tracker's step).
    pub bucket_width_secs: u64,
    /// Time between two cycles.
    pub cadence: Duration,
    /// Cancelled at shutdown; the loop stops between cycles.
    pub shutdown: CancellationToken,
    /// Epoch ms; stamps `generated_at`.
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleReport {
    /// Services forecast.
    pub services: usize,
    /// Rows written to PostgreSQL.
    pub stored: u64,
    /// Forecast points that matured (their bucket's actual arrived) during this cycle.
    pub matured: usize,
}

/// One forecast cycle with its state; [`run_cycles`] drives it on the cadence.
pub struct ForecastCycle {
    args: ForecastCycleArgs,
    /// Owned by this loop alone: matured-forecast error per model.
    tracker: AccuracyTracker,
    /// Services of the previous cycle, to forget the ones the engine evicted since.
    seen: HashSet<Arc<str>>,
}

impl ForecastCycle {
    /// A cycle over `args`; exports accuracy into the forecaster's metrics.
    pub fn new(args: ForecastCycleArgs) -> ForecastCycle {
        let horizon = super::DEFAULT_HORIZON;
        let tracker = AccuracyTracker::new(args.bucket_width_secs, horizon, ACCURACY_WINDOW_POINTS)
            .with_metrics(args.forecaster.metrics().clone());
        ForecastCycle {
            args,
            tracker,
            seen: HashSet::new(),
        }
    }

    /// The rolling accuracy so far.
    pub fn tracker(&self) -> &AccuracyTracker {
        &self.tracker
    }

    /// Forecasts every active service once.
    pub async fn once(&mut self) -> CycleReport {
        let a = &self.args;
        let inputs: Vec<ForecastInput> = {
            let engine = a.engine.lock().expect("feature engine poisoned");
            let ids: Vec<String> = engine.service_ids().map(str::to_string).collect();
            ids.iter()
                .filter_map(|id| {
                    ForecastInput::from_engine(&engine, id, ForecastContext::default())
                })
                .collect()
        };
        // actuals first, so the buckets that closed since the last cycle mature the points
        // forecast for them before newer forecasts are recorded
        let mut report = CycleReport::default();
        let mut now_seen = HashSet::with_capacity(inputs.len());
        for i in &inputs {
            report.matured +=
                self.tracker
                    .observe_history(&i.service_id, i.last_bucket_ms, &i.history);
            now_seen.insert(i.service_id.clone());
        }
        for gone in self.seen.difference(&now_seen) {
            self.tracker.forget(gone);
        }
        self.seen = now_seen;
        if inputs.is_empty() {
            a.forecaster.metrics().services.set(0);
            return report;
        }
        let outputs = a.forecaster.forecast_all(inputs).await;
        report.services = outputs.len();
        a.forecaster.metrics().services.set(outputs.len() as i64);
        for o in &outputs {
            self.tracker.record_forecast(
                &o.service_id,
                &o.model_version,
                o.first_bucket_ms,
                &o.values,
            );
        }
        a.cache.offer_all(cache_entries(&a.keys, &outputs));
        if let Some(store) = &a.store {
            match store.save((a.clock)(), &outputs).await {
                Ok(n) => {
                    report.stored = n;
                    a.forecaster.metrics().stored.inc_by(n);
                }
                Err(e) => {
                    a.forecaster.metrics().store_errors.inc();
                    tracing::warn!(error = %e, services = outputs.len(), "could not store forecasts in PostgreSQL; the cache still has them");
                }
            }
        }
        report
    }
}

fn cache_entries(keys: &KeySpace, outputs: &[ForecastOutput]) -> Vec<crate::cache::Entry> {
    outputs
        .iter()
        .filter_map(|o| {
            let json = serde_json::to_vec(o).ok()?;
            Some(keys.entry(Tier::Forecast, &o.service_id, kind::FORECAST, json))
        })
        .collect()
}

/// Runs a cycle every `cadence` until shutdown.
pub async fn run_cycles(args: ForecastCycleArgs) {
    let mut tick = tokio::time::interval(args.cadence);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = args.shutdown.clone();
    let mut cycle = ForecastCycle::new(args);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let report = cycle.once().await;
        tracing::debug!(?report, "forecast cycle");
    }
}
