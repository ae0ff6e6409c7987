//! The `[cache]` section of the config.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CacheError, Tier};

/// Which hot cache to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// Redis at [`CacheConfig::url`], shared by every replica.
    #[default]
    Redis,
    /// In-process, same tiers and budget; for the embedded default and single-node runs.
    Memory,
    /// No cache: every read goes to the database.
    None,
}

impl CacheBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheBackend::Redis => "redis",
            CacheBackend::Memory => "memory",
            CacheBackend::None => "none",
        }
    }
}

/// Time to live of each tier, in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierTtls {
    pub realtime_secs: u64,
    pub recent_secs: u64,
    pub stats_secs: u64,
    pub hourly_secs: u64,
    pub features_secs: u64,
    pub forecast_secs: u64,
}

impl Default for TierTtls {
    fn default() -> Self {
        TierTtls {
            realtime_secs: 15,
            recent_secs: 60,
            stats_secs: 300,
            hourly_secs: 3600,
            features_secs: 3600,
            forecast_secs: 3600,
        }
    }
}

impl TierTtls {
    pub fn secs(&self, tier: Tier) -> u64 {
        match tier {
            Tier::Realtime => self.realtime_secs,
            Tier::Recent => self.recent_secs,
            Tier::Stats => self.stats_secs,
            Tier::Hourly => self.hourly_secs,
            Tier::Features => self.features_secs,
            Tier::Forecast => self.forecast_secs,
        }
    }

    pub fn get(&self, tier: Tier) -> Duration {
        Duration::from_secs(self.secs(tier))
    }

    fn key(tier: Tier) -> &'static str {
        match tier {
            Tier::Realtime => "cache.ttl.realtime_secs",
            Tier::Recent => "cache.ttl.recent_secs",
            Tier::Stats => "cache.ttl.stats_secs",
            Tier::Hourly => "cache.ttl.hourly_secs",
            Tier::Features => "cache.ttl.features_secs",
            Tier::Forecast => "cache.ttl.forecast_secs",
        }
    }
}

/// Hot-cache settings. Every field has a default; `validate()` says which key is wrong and how
/// to fix it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `redis`, `memory` or `none`.
    pub backend: CacheBackend,
    /// Redis URL (`redis://[user:pass@]host:port[/db]`, `rediss://` for TLS is not built in).
    pub url: String,
    /// First part of every key; lets tests and side-by-side deployments share one Redis.
    pub key_prefix: String,
    pub ttl: TierTtls,
    /// Entries per pipeline.
    pub batch_size: usize,
    /// Values longer than this are LZ4-compressed (when that makes them smaller).
    pub compress_over_bytes: usize,
    /// Memory budget (Redis: the server's `used_memory`; memory backend: its own bytes).
    pub memory_budget_bytes: u64,
    /// Warn above this fraction of the budget; evictions bring usage back down to it.
    pub memory_warn_ratio: f64,
    /// How often the writer runs the memory guard.
    pub memory_check_interval_ms: u64,
    /// Tiers in eviction order, coldest first; must name each tier once.
    pub eviction_order: Vec<Tier>,
    /// Capacity of the write-behind queue (entries). When it is full, cache writes are dropped
    /// and counted; the pipeline never waits for the cache.
    pub channel_capacity: usize,
    /// While the backend is down the writer keeps the newest value of at most this many keys,
    /// and writes them when it returns (the refill).
    pub max_pending_refill: usize,
    /// Deadline of every cache command or pipeline; slower is treated as down.
    pub command_timeout_ms: u64,
    /// How long start-up waits for the first Redis connection before going on degraded.
    pub connect_timeout_ms: u64,
    /// Reconnect / probe back-off, from `reconnect_min_ms` doubling up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
}

/// 200 MiB.
pub const DEFAULT_MEMORY_BUDGET_BYTES: u64 = 200 * 1024 * 1024;

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: CacheBackend::Redis,
            url: "redis://127.0.0.1:6379".to_string(),
            key_prefix: "mcpwatch".to_string(),
            ttl: TierTtls::default(),
            batch_size: 50,
            compress_over_bytes: 1024,
            memory_budget_bytes: DEFAULT_MEMORY_BUDGET_BYTES,
            memory_warn_ratio: 0.8,
            memory_check_interval_ms: 5_000,
            eviction_order: Tier::COLDEST_FIRST.to_vec(),
            channel_capacity: 8_192,
            max_pending_refill: 20_000,
            command_timeout_ms: 250,
            connect_timeout_ms: 2_000,
            reconnect_min_ms: 250,
            reconnect_max_ms: 5_000,
        }
    }
}

fn bad(key: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> CacheError {
    CacheError::Config {
        key,
        problem: problem.into(),
        fix: fix.into(),
    }
}

impl CacheConfig {
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Checks every setting; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), CacheError> {
        if self.backend == CacheBackend::Redis {
            let scheme_ok = self.url.starts_with("redis://");
            if !scheme_ok {
                return Err(bad(
                    "cache.url",
                    format!("`{}` is not a redis:// URL", self.url),
                    "set cache.url = \"redis://127.0.0.1:6379\" (or set cache.backend = \"memory\" to run without Redis)",
                ));
            }
            if let Err(e) = fred::types::config::Config::from_url(&self.url) {
                return Err(bad(
                    "cache.url",
                    format!("`{}` does not parse: {e}", self.url),
                    "use the form redis://[user:password@]host:port[/db]",
                ));
            }
        }
        if self.key_prefix.is_empty()
            || self
                .key_prefix
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '*' | '?' | '[' | ']' | '\\'))
        {
            return Err(bad(
                "cache.key_prefix",
                format!(
                    "`{}` is empty or has whitespace or glob characters (* ? [ ] \\)",
                    self.key_prefix
                ),
                "use letters, digits, '-', '_' or ':', e.g. cache.key_prefix = \"mcpwatch\"",
            ));
        }
        for tier in Tier::ALL {
            let secs = self.ttl.secs(tier);
            if secs == 0 || secs > 30 * 24 * 3600 {
                return Err(bad(
                    TierTtls::key(tier),
                    format!("{secs} s is outside 1 s ..= 30 days"),
                    format!(
                        "set {} = {}",
                        TierTtls::key(tier),
                        TierTtls::default().secs(tier)
                    ),
                ));
            }
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(bad(
                "cache.batch_size",
                format!("{} is outside 1..=10000", self.batch_size),
                "set cache.batch_size = 50",
            ));
        }
        if self.compress_over_bytes < 64 {
            return Err(bad(
                "cache.compress_over_bytes",
                format!(
                    "{} bytes is too small to gain from compression",
                    self.compress_over_bytes
                ),
                "set cache.compress_over_bytes = 1024 (at least 64)",
            ));
        }
        if self.memory_budget_bytes < 1024 * 1024 {
            return Err(bad(
                "cache.memory_budget_bytes",
                format!("{} bytes is below 1 MiB", self.memory_budget_bytes),
                format!("set cache.memory_budget_bytes = {DEFAULT_MEMORY_BUDGET_BYTES} (200 MiB)"),
            ));
        }
        if !(self.memory_warn_ratio > 0.0 && self.memory_warn_ratio <= 1.0) {
            return Err(bad(
                "cache.memory_warn_ratio",
                format!("{} is outside (0, 1]", self.memory_warn_ratio),
                "set cache.memory_warn_ratio = 0.8",
            ));
        }
        if self.memory_check_interval_ms < 100 {
            return Err(bad(
                "cache.memory_check_interval_ms",
                format!("{} ms is below 100 ms", self.memory_check_interval_ms),
                "set cache.memory_check_interval_ms = 5000",
            ));
        }
        let mut seen = [false; 6];
        for tier in &self.eviction_order {
            if std::mem::replace(&mut seen[tier.index()], true) {
                return Err(bad(
                    "cache.eviction_order",
                    format!("`{tier}` is listed twice"),
                    "list each tier once, coldest first, e.g. [\"hourly\", \"features\", \"stats\", \"recent\", \"forecast\", \"realtime\"]",
                ));
            }
        }
        if let Some(missing) = Tier::ALL.into_iter().find(|t| !seen[t.index()]) {
            return Err(bad(
                "cache.eviction_order",
                format!("`{missing}` is missing"),
                "list each tier once, coldest first, e.g. [\"hourly\", \"features\", \"stats\", \"recent\", \"forecast\", \"realtime\"]",
            ));
        }
        if self.channel_capacity < self.batch_size {
            return Err(bad(
                "cache.channel_capacity",
                format!(
                    "{} is smaller than cache.batch_size ({})",
                    self.channel_capacity, self.batch_size
                ),
                "set cache.channel_capacity = 8192 (at least cache.batch_size)",
            ));
        }
        if !(1..=60_000).contains(&self.command_timeout_ms) {
            return Err(bad(
                "cache.command_timeout_ms",
                format!("{} ms is outside 1..=60000", self.command_timeout_ms),
                "set cache.command_timeout_ms = 250",
            ));
        }
        if !(1..=600_000).contains(&self.connect_timeout_ms) {
            return Err(bad(
                "cache.connect_timeout_ms",
                format!("{} ms is outside 1..=600000", self.connect_timeout_ms),
                "set cache.connect_timeout_ms = 2000",
            ));
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            return Err(bad(
                "cache.reconnect_min_ms",
                format!(
                    "{} ms must be at least 1 and at most cache.reconnect_max_ms ({} ms)",
                    self.reconnect_min_ms, self.reconnect_max_ms
                ),
                "set cache.reconnect_min_ms = 250 and cache.reconnect_max_ms = 5000",
            ));
        }
        if self.reconnect_max_ms > u64::from(u32::MAX) {
            return Err(bad(
                "cache.reconnect_max_ms",
                format!("{} ms is too large", self.reconnect_max_ms),
                "set cache.reconnect_max_ms = 5000",
            ));
        }
        Ok(())
    }
}
