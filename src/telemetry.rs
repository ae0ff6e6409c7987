//! The daemon's own figures, in one Prometheus registry served at `/metrics`.
//!
//! Each stage owns a metrics struct (cheap clones of atomic handles) and registers it here
//! once at start; the hot paths update their handles, never the registry.

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use crate::ingest::IngestMetrics;
use crate::store::StoreMetrics;

/// All metric handles, grouped by stage.
#[derive(Clone, Default)]
pub struct Metrics {
    pub ingest: IngestMetrics,
    pub store: StoreMetrics,
}

impl Metrics {
    /// Builds the registry that `/metrics` encodes.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        self.ingest.register(&mut registry);
        self.store.register(&mut registry);
        let build = prometheus_client::metrics::info::Info::new(vec![(
            "version",
            env!("CARGO_PKG_VERSION"),
        )]);
        registry.register("mcpwatch_build", "Build information", build);
        registry
    }
}

/// Renders the registry in the OpenMetrics text format (which Prometheus scrapes).
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // encoding into a String cannot fail
    let _ = encode(&mut out, registry);
    out
}
