//! The read path: cache first, the database on a miss, and the answer says which served it.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use tracing::debug;

use super::{CacheMetrics, CacheMode, CacheSender, CacheWriter, Entry, HotCache, Source, Tier};

/// Cache-first reads with a database fallback supplied per call.
///
/// Records `mcpwatch_cache_lookups_total{result}`, the hit/miss latency of the cache probe
/// (`mcpwatch_cache_lookup_duration_seconds{result}`) and the whole answer's latency by source
/// (`mcpwatch_cache_read_duration_seconds{source}`). A database answer is offered back to the
/// cache (read-repair) when a writer is attached, so the cache refills from reads too.
#[derive(Clone)]
pub struct ReadThrough {
    /// The backend, shared with the writer; `None` when the cache is disabled (every read
    /// goes to the database).
    cache: Option<Arc<dyn HotCache>>,
    /// The writer's mode; while degraded, reads skip the cache instead of paying a timeout.
    status: Option<watch::Receiver<CacheMode>>,
    /// Producer handle for read-repair (a database answer is queued for the cache).
    refill: Option<CacheSender>,
    /// Shared metrics (owned by the daemon's registry): hit/miss counts and latencies.
    metrics: Arc<CacheMetrics>,
}

impl ReadThrough {
    pub fn new(cache: Option<Arc<dyn HotCache>>, metrics: Arc<CacheMetrics>) -> ReadThrough {
        ReadThrough {
            cache,
            status: None,
            refill: None,
            metrics,
        }
    }

    /// Follows the writer's mode (skip the cache while degraded) and sends database answers
    /// back through it.
    pub fn with_writer(mut self, writer: &CacheWriter) -> ReadThrough {
        self.status = Some(writer.status());
        let sender = writer.sender();
        self.refill = sender.is_enabled().then_some(sender);
        self
    }

    /// Reads `key`: the cache, then `fallback` (the database query) on a miss or cache error.
    /// Returns the value and who served it; the fallback's error is passed through.
    pub async fn get<F, Fut, E>(
        &self,
        key: &str,
        tier: Tier,
        fallback: F,
    ) -> Result<(Option<Bytes>, Source), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Bytes>, E>>,
    {
        self.read(
            key,
            tier,
            |b| Some(b.clone()),
            |v| Some(v.clone()),
            fallback,
        )
        .await
    }

    /// Like [`ReadThrough::get`] for JSON values: the cached bytes are parsed as `T` (an
    /// unparseable value counts as a cache error and falls back), and a database answer is
    /// serialised for read-repair.
    pub async fn get_json<T, F, Fut, E>(
        &self,
        key: &str,
        tier: Tier,
        fallback: F,
    ) -> Result<(Option<T>, Source), E>
    where
        T: DeserializeOwned + Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        self.read(
            key,
            tier,
            |b| serde_json::from_slice(b).ok(),
            |v| serde_json::to_vec(v).ok().map(Bytes::from),
            fallback,
        )
        .await
    }

    async fn read<T, F, Fut, E>(
        &self,
        key: &str,
        tier: Tier,
        decode: impl Fn(&Bytes) -> Option<T>,
        encode: impl Fn(&T) -> Option<Bytes>,
        fallback: F,
    ) -> Result<(Option<T>, Source), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let start = Instant::now();
        if let Some(value) = self.probe(key, decode).await {
            self.metrics.read(Source::Cache, start.elapsed());
            return Ok((Some(value), Source::Cache));
        }
        let value = fallback().await?;
        let source = if value.is_some() {
            Source::Database
        } else {
            Source::None
        };
        self.metrics.read(source, start.elapsed());
        if let (Some(v), Some(refill)) = (&value, &self.refill) {
            if self.mode() == CacheMode::Ready {
                if let Some(bytes) = encode(v) {
                    refill.offer(Entry::new(key, tier, bytes));
                }
            }
        }
        Ok((value, source))
    }

    fn mode(&self) -> CacheMode {
        match (&self.cache, &self.status) {
            (None, _) => CacheMode::Disabled,
            (Some(_), Some(rx)) => *rx.borrow(),
            (Some(_), None) => CacheMode::Ready,
        }
    }

    /// Asks the cache; `None` on a miss, an error, or when the cache is skipped.
    async fn probe<T>(&self, key: &str, decode: impl Fn(&Bytes) -> Option<T>) -> Option<T> {
        let cache = self.cache.as_ref()?;
        if self.mode() == CacheMode::Degraded {
            self.metrics.lookup("bypass", None);
            return None;
        }
        let start = Instant::now();
        match cache.get(key).await {
            Ok(Some(bytes)) => match decode(&bytes) {
                Some(v) => {
                    self.metrics.lookup("hit", Some(start.elapsed()));
                    Some(v)
                }
                None => {
                    self.metrics.error("decode");
                    self.metrics.lookup("error", None);
                    None
                }
            },
            Ok(None) => {
                self.metrics.lookup("miss", Some(start.elapsed()));
                None
            }
            Err(e) => {
                debug!(key, error = %e, "cache read failed; answering from the database");
                self.metrics.lookup("error", None);
                None
            }
        }
    }
}
