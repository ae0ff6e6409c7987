//! The Redis backend, through `fred`.
//!
//! One multiplexed connection. Writes go as pipelines of `SET key value EX ttl`, one pipeline
//! per [`CacheConfig::batch_size`] entries (all commands written before any answer is read). Every
//! request checks the connection state first and fails at once while fred is reconnecting,
//! and every request has a deadline ([`CacheConfig::command_timeout_ms`]): a dead or slow
//! Redis costs the caller at most that, never a queue of waiting commands.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::clients::WithOptions;
use fred::prelude::{
    Builder, Client, ClientLike, Config, Expiration, KeysInterface, Options, ReconnectPolicy, Value,
};
use fred::types::{ConnectHandle, InfoKind, Key};
use futures::future::BoxFuture;
use tracing::{info, warn};

use super::{
    codec, with_timeout, CacheBackend, CacheConfig, CacheError, CacheHealth, CacheMetrics,
    CacheMode, Entry, GuardReport, HotCache, KeySpace, MemoryPolicy, Pressure, TierTtls,
};

/// Keys per `SCAN` page and per `UNLINK` while evicting a tier.
const EVICT_PAGE: u32 = 1000;
/// Upper bound on queued commands inside fred; beyond it commands fail with back-pressure.
const MAX_COMMAND_BUFFER: usize = 50_000;

/// The Redis hot cache.
pub struct RedisCache {
    /// The fred client: owns the socket, the reconnect policy and the router task. Cloned
    /// (an `Arc` inside) into `fast`; only this struct uses it.
    client: Client,
    /// The same connection with per-command options (one attempt, fail fast), used for every
    /// request so a down Redis answers with an error at once instead of queueing.
    fast: WithOptions<Client>,
    /// The connection task fred spawned (it drives reconnection). Owned here so dropping the
    /// cache stops it instead of leaking a reconnect loop.
    conn: Mutex<Option<ConnectHandle>>,
    keys: KeySpace,
    ttls: TierTtls,
    batch_size: usize,
    compress_over_bytes: usize,
    policy: MemoryPolicy,
    timeout: Duration,
    /// `used_memory` at the last guard pass (0 = not measured yet).
    last_used: AtomicU64,
    /// Shared metrics (owned by the daemon's registry): errors, batches, memory in use.
    metrics: Arc<CacheMetrics>,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.keys.prefix())
            .field("connected", &self.client.is_connected())
            .finish()
    }
}

impl RedisCache {
    /// Builds the client and starts connecting; waits up to `connect_timeout_ms` for the first
    /// connection. An unreachable Redis is *not* an error: the cache is returned unconnected,
    /// fred keeps reconnecting (back-off `reconnect_min_ms` doubling to `reconnect_max_ms`),
    /// and the writer reports it degraded until it answers. Only a bad URL fails.
    pub async fn connect(
        config: &CacheConfig,
        metrics: Arc<CacheMetrics>,
    ) -> Result<RedisCache, CacheError> {
        let cache = RedisCache::new(config, metrics)?;
        let handle = cache.client.connect();
        *cache.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        match tokio::time::timeout(config.connect_timeout(), cache.client.wait_for_connect()).await
        {
            Ok(Ok(())) => info!(url = %redact(&config.url), "hot cache connected to Redis"),
            Ok(Err(e)) => warn!(url = %redact(&config.url), error = %e,
                "Redis unreachable at start-up: running without the cache, reconnecting in the background"),
            Err(_) => warn!(url = %redact(&config.url), after = ?config.connect_timeout(),
                "Redis did not answer at start-up: running without the cache, reconnecting in the background"),
        }
        Ok(cache)
    }

    fn new(config: &CacheConfig, metrics: Arc<CacheMetrics>) -> Result<RedisCache, CacheError> {
        let mut fred_config = Config::from_url(&config.url)?;
        // Run the reconnect policy for the first connection too, instead of failing start-up.
        fred_config.fail_fast = false;
        let timeout = config.command_timeout();
        let policy = ReconnectPolicy::new_exponential(
            0, // forever
            config.reconnect_min_ms as u32,
            config.reconnect_max_ms as u32,
            2,
        );
        let client = Builder::from_config(fred_config)
            .set_policy(policy)
            .with_connection_config(|c| {
                c.connection_timeout = config.connect_timeout();
                c.internal_command_timeout = config.connect_timeout();
                // A command caught by a disconnect errors instead of being replayed later.
                c.max_command_attempts = 1;
                c.max_command_buffer_len = MAX_COMMAND_BUFFER;
                c.tcp.nodelay = Some(true);
            })
            .build()?;
        // No per-command timer: every request (a whole pipeline included) runs under one
        // deadline of its own (`with_timeout`), which is measurably cheaper than 50 timers.
        let fast = client.with_options(&Options {
            max_attempts: Some(1),
            fail_fast: true,
            ..Default::default()
        });
        metrics.set_budget(config.memory_budget_bytes);
        Ok(RedisCache {
            fast,
            client,
            conn: Mutex::new(None),
            keys: KeySpace::new(&config.key_prefix),
            ttls: config.ttl.clone(),
            batch_size: config.batch_size,
            compress_over_bytes: config.compress_over_bytes,
            policy: MemoryPolicy::from_config(config),
            timeout,
            last_used: AtomicU64::new(0),
            metrics,
        })
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    pub fn key_space(&self) -> &KeySpace {
        &self.keys
    }

    /// The underlying fred client, for tests and the bench (e.g. `TTL`, raw `GET`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn ensure_connected(&self, op: &'static str) -> Result<(), CacheError> {
        if self.client.is_connected() {
            Ok(())
        } else {
            self.metrics.error(op);
            Err(CacheError::Unavailable(format!(
                "not connected to Redis ({:?})",
                self.client.state()
            )))
        }
    }

    fn count_error<T>(&self, op: &'static str, r: Result<T, CacheError>) -> Result<T, CacheError> {
        if r.is_err() {
            self.metrics.error(op);
        }
        r
    }

    fn decode(&self, key: &str, stored: Option<Bytes>) -> Result<Option<Bytes>, CacheError> {
        match stored {
            None => Ok(None),
            Some(bytes) => codec::decode(bytes).map(Some).map_err(|reason| {
                self.metrics.error("decode");
                CacheError::Corrupt {
                    key: key.to_string(),
                    reason,
                }
            }),
        }
    }

    /// Writes one chunk as a pipeline: every `SET … EX` is handed to the connection before
    /// any answer is awaited, so fred writes them back to back, flushing when its queue runs
    /// dry (its automatic pipelining), and the answers are read in order. In the same run this
    /// measured faster than `Pipeline::all` (which clones the buffered commands first):
    /// p50 263 vs 499 µs on a current-thread runtime, 489 vs 610 µs on a multi-thread one.
    async fn write_pipeline(&self, chunk: &[Entry]) -> Result<(), CacheError> {
        let sets = chunk.iter().map(|e| {
            let (value, compressed) = codec::encode(&e.value, self.compress_over_bytes);
            if compressed {
                self.metrics.compressed.inc();
            }
            let ttl = self.ttls.secs(e.tier) as i64;
            self.fast.set::<(), _, _>(
                e.key.as_str(),
                Value::Bytes(value),
                Some(Expiration::EX(ttl)),
                None,
                false,
            )
        });
        for r in futures::future::join_all(sets).await {
            r?;
        }
        Ok(())
    }

    /// The server's `used_memory` (`INFO memory`).
    pub async fn used_memory(&self) -> Result<u64, CacheError> {
        self.ensure_connected("info")?;
        let r = with_timeout("info", self.timeout, async {
            let info: String = self.fast.info(Some(InfoKind::Memory)).await?;
            parse_used_memory(&info)
                .ok_or_else(|| CacheError::Unavailable("INFO memory has no used_memory".into()))
        })
        .await;
        let used = self.count_error("info", r)?;
        self.last_used.store(used, Ordering::Relaxed);
        self.metrics.set_used(used);
        Ok(used)
    }

    /// Deletes the keys of one tier page by page (`SCAN MATCH` + `UNLINK`), stopping as soon as
    /// `used_memory` is back under the warning level. Returns `(keys evicted, used_memory)`.
    async fn evict_tier(&self, tier: super::Tier, mut used: u64) -> Result<(u64, u64), CacheError> {
        let pattern = self.keys.tier_pattern(tier);
        let mut cursor = "0".to_string();
        let mut evicted = 0u64;
        loop {
            let r = with_timeout("evict", self.timeout, async {
                let page: (String, Vec<Key>) = self
                    .fast
                    .scan_page(cursor.clone(), pattern.clone(), Some(EVICT_PAGE), None)
                    .await?;
                Ok(page)
            })
            .await;
            let (next, keys) = self.count_error("evict", r)?;
            if !keys.is_empty() {
                let n = keys.len() as u64;
                let r = with_timeout("evict", self.timeout, async {
                    let _: i64 = self.fast.unlink(keys).await?;
                    Ok(())
                })
                .await;
                self.count_error("evict", r)?;
                evicted += n;
                used = self.used_memory().await?;
                if used <= self.policy.warn_bytes {
                    break;
                }
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        if evicted > 0 {
            self.metrics.evicted(tier, evicted);
        }
        Ok((evicted, used))
    }
}

impl Drop for RedisCache {
    fn drop(&mut self) {
        if let Some(handle) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).take() {
            handle.abort();
        }
    }
}

/// `used_memory:<n>` from an `INFO memory` reply.
pub(crate) fn parse_used_memory(info: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The URL without its password, for logs.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

impl HotCache for RedisCache {
    fn backend(&self) -> CacheBackend {
        CacheBackend::Redis
    }

    fn put_batch<'a>(&'a self, entries: &'a [Entry]) -> BoxFuture<'a, Result<usize, CacheError>> {
        Box::pin(async move {
            for chunk in entries.chunks(self.batch_size) {
                self.ensure_connected("put")?;
                let start = Instant::now();
                let r = with_timeout("put", self.timeout, self.write_pipeline(chunk)).await;
                self.count_error("put", r)?;
                self.metrics
                    .batch_duration
                    .observe(start.elapsed().as_secs_f64());
                self.metrics.batches.inc();
                self.metrics.writes.inc_by(chunk.len() as u64);
            }
            Ok(entries.len())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, CacheError>> {
        Box::pin(async move {
            self.ensure_connected("get")?;
            let r = with_timeout("get", self.timeout, async {
                let v: Option<Bytes> = self.fast.get(key).await?;
                Ok(v)
            })
            .await;
            let stored = self.count_error("get", r)?;
            self.decode(key, stored)
        })
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Bytes>>, CacheError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            self.ensure_connected("get")?;
            let r = with_timeout("get", self.timeout, async {
                let ks: Vec<Key> = keys.iter().map(|k| Key::from(k.as_str())).collect();
                let v: Vec<Option<Bytes>> = if ks.len() == 1 {
                    vec![
                        self.fast
                            .get(ks.into_iter().next().expect("one key"))
                            .await?,
                    ]
                } else {
                    self.fast.mget(ks).await?
                };
                Ok(v)
            })
            .await;
            let stored = self.count_error("get", r)?;
            keys.iter()
                .zip(stored)
                .map(|(k, v)| self.decode(k, v))
                .collect()
        })
    }

    fn is_available(&self) -> bool {
        self.client.is_connected()
    }

    fn health(&self) -> BoxFuture<'_, CacheHealth> {
        Box::pin(async move {
            let detail = if !self.client.is_connected() {
                Some(format!("not connected ({:?})", self.client.state()))
            } else {
                let r = with_timeout("ping", self.timeout, async {
                    let _: String = self.fast.ping(None).await?;
                    Ok(())
                })
                .await;
                match self.count_error("ping", r) {
                    Ok(()) => None,
                    Err(e) => Some(e.to_string()),
                }
            };
            let used = self.last_used.load(Ordering::Relaxed);
            CacheHealth {
                backend: CacheBackend::Redis,
                mode: if detail.is_none() {
                    CacheMode::Ready
                } else {
                    CacheMode::Degraded
                },
                detail,
                used_memory_bytes: (used > 0).then_some(used),
                memory_budget_bytes: self.policy.budget_bytes,
            }
        })
    }

    fn memory_guard(&self) -> BoxFuture<'_, Result<GuardReport, CacheError>> {
        Box::pin(async move {
            let before = self.used_memory().await?;
            let pressure = self.policy.pressure(before);
            let mut used = before;
            let mut evicted = Vec::new();
            if pressure == Pressure::Over {
                for &tier in &self.policy.eviction_order {
                    if used <= self.policy.warn_bytes {
                        break;
                    }
                    let (n, now_used) = self.evict_tier(tier, used).await?;
                    used = now_used;
                    if n > 0 {
                        evicted.push((tier, n));
                    }
                }
            }
            Ok(GuardReport {
                pressure,
                used_bytes_before: before,
                used_bytes_after: used,
                budget_bytes: self.policy.budget_bytes,
                evicted,
            })
        })
    }
}
