//! The hot cache: the last few minutes-to-hours of every service, kept where the API can read
//! it in microseconds.
//!
//! Where it sits in the data's path: Kafka → `ingest` (decode, validate) → `features` (rolling
//! buckets, feature vectors) → **here**, beside `store` (PostgreSQL, the source of truth). The
//! pipeline hands fresh windows to a [`CacheWriter`] (write-behind, never blocking) at the same
//! time as it hands rows to the store; the forecaster adds its latest forecast the same way.
//! The HTTP API and the rebalance path read through [`ReadThrough`]: cache first, the database
//! (a query the caller supplies) on a miss, and every answer says which one served it
//! ([`Source`]). The cache is best-effort: when Redis is down or slow the writer drops cache
//! writes (counting them), readiness reports `degraded`, ingestion and the store go on, and the
//! cache refills when Redis returns. Nothing is lost, because nothing lives only here.
//!
//! # Backends
//! [`HotCache`] is the one interface; [`open`] picks the backend from [`CacheConfig::backend`]:
//! - `redis` — [`RedisCache`], through `fred`, shared by all replicas;
//! - `memory` — [`MemoryCache`], in-process, same tiers, TTLs, value format, budget and
//!   eviction order (the embedded default, SPEC §8);
//! - `none` — no cache: every read goes to the database.
//!
//! # Key layout
//! ```text
//! {prefix}:{tier}:{service_id}:{kind}        e.g.  mcpwatch:realtime:github-mcp:latest
//! ```
//! - `prefix` — [`CacheConfig::key_prefix`] (default `mcpwatch`); tests and side-by-side
//!   deployments use their own so they never collide. No glob characters (`* ? [ ] \`).
//! - `tier` — [`Tier::as_str`]: `realtime` (15 s), `recent` (60 s), `stats` (5 min),
//!   `hourly` (1 h), `features` (1 h), `forecast` (1 h); TTLs from [`TierTtls`]. The tier is in
//!   the key so the memory guard can find and drop a whole tier with one `SCAN MATCH`.
//! - `service_id` — as in [`crate::sample::Sample::service_id`], verbatim (it may contain `:`).
//! - `kind` — what the value is, chosen by the writer; must not contain `:`. The kinds used so
//!   far are in [`kind`].
//!
//! # Value format
//! Every stored value starts with one marker byte: `0x00` = the bytes follow as given,
//! `0x01` = an LZ4 block (`lz4_flex`, little-endian `u32` uncompressed length first). Values
//! longer than [`CacheConfig::compress_over_bytes`] (default 1024) are compressed when that
//! makes them smaller. See [`codec`].

mod bench;
pub mod codec;
mod config;
mod error;
mod memory;
mod metrics;
mod read;
mod redis;
mod sample_view;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use bench::{run_bench, BenchReport, Percentiles};
pub use config::{CacheBackend, CacheConfig, TierTtls};
pub use error::CacheError;
pub use memory::MemoryCache;
pub use metrics::CacheMetrics;
pub use read::ReadThrough;
pub use redis::RedisCache;
pub use sample_view::SampleView;
pub use writer::{CacheSender, CacheWriter, WriterStats};

/// The `kind` part of the keys written so far (one per hot window of SPEC §3).
pub mod kind {
    /// [`super::Tier::Realtime`]: the latest sample of a service ([`super::SampleView`] JSON).
    pub const LATEST: &str = "latest";
    /// [`super::Tier::Recent`]: recent points of a service.
    pub const POINTS: &str = "points";
    /// [`super::Tier::Stats`]: realtime statistics of a service.
    pub const STATS: &str = "stats";
    /// [`super::Tier::Hourly`]: the hourly windows (buckets) of a service.
    pub const HOURLY: &str = "hourly";
    /// [`super::Tier::Features`]: the model's feature vector of a service.
    pub const FEATURES: &str = "features";
    /// [`super::Tier::Forecast`]: the latest 24-hour forecast of a service.
    pub const FORECAST: &str = "forecast";
}

/// A TTL class. Each cached value belongs to exactly one tier; the tier sets its time to live
/// and its place in the eviction order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Latest sample per service. Default TTL 15 s.
    Realtime,
    /// Recent points. Default TTL 60 s.
    Recent,
    /// Realtime statistics. Default TTL 5 min.
    Stats,
    /// Hourly windows. Default TTL 1 h.
    Hourly,
    /// Feature vectors. Default TTL 1 h.
    Features,
    /// Latest forecasts. Default TTL 1 h.
    Forecast,
}

impl Tier {
    pub const ALL: [Tier; 6] = [
        Tier::Realtime,
        Tier::Recent,
        Tier::Stats,
        Tier::Hourly,
        Tier::Features,
        Tier::Forecast,
    ];

    /// The default eviction order, coldest first: the tiers read least often and cheapest to
    /// rebuild from the database go first; the latest samples and forecasts (what the API and
    /// `POST /plans` read) go last.
    pub const COLDEST_FIRST: [Tier; 6] = [
        Tier::Hourly,
        Tier::Features,
        Tier::Stats,
        Tier::Recent,
        Tier::Forecast,
        Tier::Realtime,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Realtime => "realtime",
            Tier::Recent => "recent",
            Tier::Stats => "stats",
            Tier::Hourly => "hourly",
            Tier::Features => "features",
            Tier::Forecast => "forecast",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Position in [`Tier::ALL`], for per-tier arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds keys in the documented layout under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    prefix: Arc<str>,
}

impl KeySpace {
    pub fn new(prefix: &str) -> KeySpace {
        KeySpace {
            prefix: Arc::from(prefix),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:{tier}:{service_id}:{kind}`.
    pub fn key(&self, tier: Tier, service_id: &str, kind: &str) -> String {
        debug_assert!(!kind.contains(':'), "cache kind must not contain ':'");
        let mut key = String::with_capacity(
            self.prefix.len() + tier.as_str().len() + service_id.len() + kind.len() + 3,
        );
        key.push_str(&self.prefix);
        key.push(':');
        key.push_str(tier.as_str());
        key.push(':');
        key.push_str(service_id);
        key.push(':');
        key.push_str(kind);
        key
    }

    /// A ready-to-send entry for `key(tier, service_id, kind)`.
    pub fn entry(
        &self,
        tier: Tier,
        service_id: &str,
        kind: &str,
        value: impl Into<Bytes>,
    ) -> Entry {
        Entry {
            key: self.key(tier, service_id, kind),
            tier,
            value: value.into(),
        }
    }

    /// The `SCAN MATCH` pattern of every key of one tier under this prefix.
    pub fn tier_pattern(&self, tier: Tier) -> String {
        format!("{}:{}:*", self.prefix, tier.as_str())
    }

    /// Splits a key of this key space back into `(tier, service_id, kind)`.
    pub fn parse<'k>(&self, key: &'k str) -> Option<(Tier, &'k str, &'k str)> {
        let rest = key.strip_prefix(&*self.prefix)?.strip_prefix(':')?;
        let (tier, rest) = rest.split_once(':')?;
        let (service, kind) = rest.rsplit_once(':')?;
        Some((Tier::parse(tier)?, service, kind))
    }
}

/// One value to cache: its full key, its tier (which sets the TTL) and the raw bytes (the
/// backend adds the marker byte and compresses; callers never see either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub tier: Tier,
    pub value: Bytes,
}

impl Entry {
    pub fn new(key: impl Into<String>, tier: Tier, value: impl Into<Bytes>) -> Entry {
        Entry {
            key: key.into(),
            tier,
            value: value.into(),
        }
    }
}

/// Which layer answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The hot cache had it.
    Cache,
    /// The cache did not (or was unavailable); the database did.
    Database,
    /// Neither had it.
    None,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Database => "database",
            Source::None => "none",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cache's state as readiness and `/metrics` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Writes and reads go to the cache.
    Ready,
    /// The backend is unreachable or too slow: writes are held back or dropped, reads go
    /// straight to the database, and the writer probes until the backend answers again.
    Degraded,
    /// No cache configured (`backend = "none"`).
    Disabled,
}

impl CacheMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::Ready => "ready",
            CacheMode::Degraded => "degraded",
            CacheMode::Disabled => "disabled",
        }
    }
}

/// What a backend says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheHealth {
    pub backend: CacheBackend,
    pub mode: CacheMode,
    /// Why it is degraded, if it is.
    pub detail: Option<String>,
    /// Memory in use as of the last memory-guard check (Redis: the server's `used_memory`).
    pub used_memory_bytes: Option<u64>,
    pub memory_budget_bytes: u64,
}

/// How close the cache is to its memory budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pressure {
    /// Below the warning level.
    Ok,
    /// Between the warning level and the budget: logged, nothing evicted.
    Warn,
    /// Over the budget: tiers are evicted coldest first down to the warning level.
    Over,
}

/// The memory budget and eviction order, shared by both backends so they behave alike.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPolicy {
    pub budget_bytes: u64,
    /// Above this, warn; evictions bring usage back down to it.
    pub warn_bytes: u64,
    /// Coldest first.
    pub eviction_order: Vec<Tier>,
}

impl MemoryPolicy {
    pub fn from_config(config: &CacheConfig) -> MemoryPolicy {
        let budget = config.memory_budget_bytes;
        MemoryPolicy {
            budget_bytes: budget,
            warn_bytes: (budget as f64 * config.memory_warn_ratio) as u64,
            eviction_order: config.eviction_order.clone(),
        }
    }

    pub fn pressure(&self, used_bytes: u64) -> Pressure {
        if used_bytes > self.budget_bytes {
            Pressure::Over
        } else if used_bytes > self.warn_bytes {
            Pressure::Warn
        } else {
            Pressure::Ok
        }
    }
}

/// What one memory-guard pass saw and did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardReport {
    /// Pressure before any eviction.
    pub pressure: Pressure,
    pub used_bytes_before: u64,
    pub used_bytes_after: u64,
    pub budget_bytes: u64,
    /// Keys evicted per tier, in the order the tiers were evicted.
    pub evicted: Vec<(Tier, u64)>,
}

impl GuardReport {
    pub fn evicted_keys(&self) -> u64 {
        self.evicted.iter().map(|(_, n)| n).sum()
    }
}

/// The hot-cache interface both backends implement. Object-safe (`Arc<dyn HotCache>`): the
/// backend is picked from the config at start-up.
///
/// Every method is bounded in time by the backend (Redis: the command timeout, failing fast
/// while disconnected); an error means "treat as unavailable", never "retry now".
pub trait HotCache: Send + Sync + 'static {
    fn backend(&self) -> CacheBackend;

    /// Stores the entries with their tiers' TTLs, in pipelines of at most
    /// [`CacheConfig::batch_size`]. Returns how many were stored.
    fn put_batch<'a>(&'a self, entries: &'a [Entry]) -> BoxFuture<'a, Result<usize, CacheError>>;

    /// The value under `key`, decoded (marker removed, decompressed), if present and not expired.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, CacheError>>;

    /// Several keys in one round trip; the answer has one slot per key, in order.
    fn get_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Bytes>>, CacheError>>;

    /// Probes the backend (Redis: `PING`, bounded by the command timeout).
    fn health(&self) -> BoxFuture<'_, CacheHealth>;

    /// A free, local check the writer makes every tick while ready (Redis: is the connection
    /// up). `false` flips the cache to degraded without waiting for a write to fail.
    fn is_available(&self) -> bool {
        true
    }

    /// Compares memory in use with the budget; over it, evicts whole tiers coldest first until
    /// usage is back under the warning level.
    fn memory_guard(&self) -> BoxFuture<'_, Result<GuardReport, CacheError>>;
}

/// Validates the config and opens the configured backend (`None` for `backend = "none"`).
///
/// A Redis that is unreachable at start-up is not an error: the cache comes up degraded and
/// connects in the background (see [`RedisCache::connect`]). Only a bad config is.
pub async fn open(
    config: &CacheConfig,
    metrics: Arc<CacheMetrics>,
) -> Result<Option<Arc<dyn HotCache>>, CacheError> {
    config.validate()?;
    metrics.set_budget(config.memory_budget_bytes);
    Ok(match config.backend {
        CacheBackend::Redis => Some(Arc::new(RedisCache::connect(config, metrics).await?)),
        CacheBackend::Memory => Some(Arc::new(MemoryCache::new(config, metrics))),
        CacheBackend::None => None,
    })
}

/// Runs `fut` with a deadline, mapping the elapsed deadline to [`CacheError::Timeout`].
pub(crate) async fn with_timeout<T>(
    op: &'static str,
    after: Duration,
    fut: impl std::future::Future<Output = Result<T, CacheError>>,
) -> Result<T, CacheError> {
    match tokio::time::timeout(after, fut).await {
        Ok(result) => result,
        Err(_) => Err(CacheError::Timeout { op, after }),
    }
}
