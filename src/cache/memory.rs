//! The in-process backend: same tiers, TTLs, value format, budget and eviction order as Redis,
//! for the embedded default (no external services) and single-node runs.
//!
//! Expiry is O(1) amortised without a timer wheel: within a tier every entry has the same TTL,
//! so insertion order *is* expiry order, and each tier keeps a FIFO of `(expires, key)`.
//! Overwriting a key leaves a stale FIFO item behind (recognised by its generation number);
//! stale items fall out when they expire, and a FIFO much longer than its live entries is
//! compacted. The budget bounds the whole thing: each entry is charged its key, its stored
//! value and a fixed overhead, and going over the budget evicts coldest tiers first (oldest
//! entries of a tier first) down to the warning level, on the write that crossed it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::time::Instant;
use tracing::warn;

use super::{
    codec, CacheBackend, CacheConfig, CacheError, CacheHealth, CacheMetrics, CacheMode, Entry,
    GuardReport, HotCache, MemoryPolicy, Pressure, Tier, TierTtls,
};

/// Bytes charged per entry on top of its key and value (map slot, FIFO item, `Arc`s).
pub const ENTRY_OVERHEAD_BYTES: u64 = 96;

struct Slot {
    value: Bytes,
    tier: Tier,
    expires: Instant,
    generation: u64,
}

struct FifoItem {
    key: Arc<str>,
    expires: Instant,
    generation: u64,
}

#[derive(Default)]
struct State {
    map: HashMap<Arc<str>, Slot>,
    /// One FIFO per tier, in insertion (= expiry) order.
    fifos: [VecDeque<FifoItem>; 6],
    live: [usize; 6],
    used: u64,
    generation: u64,
}

fn cost(key: &str, value: &Bytes) -> u64 {
    key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD_BYTES
}

impl State {
    fn remove(&mut self, key: &str) -> Option<Slot> {
        let (k, slot) = self.map.remove_entry(key)?;
        self.used -= cost(&k, &slot.value);
        self.live[slot.tier.index()] -= 1;
        Some(slot)
    }

    /// Drops expired entries from the front of every tier's FIFO.
    fn expire(&mut self, now: Instant) {
        for tier in Tier::ALL {
            while let Some(front) = self.fifos[tier.index()].front() {
                if front.expires > now {
                    break;
                }
                let item = self.fifos[tier.index()].pop_front().expect("front exists");
                if self
                    .map
                    .get(&*item.key)
                    .is_some_and(|s| s.generation == item.generation)
                {
                    self.remove(&item.key);
                }
            }
        }
    }

    /// Pops the oldest live entry of `tier`; `false` when the tier is empty.
    fn evict_one(&mut self, tier: Tier) -> bool {
        while let Some(item) = self.fifos[tier.index()].pop_front() {
            if self
                .map
                .get(&*item.key)
                .is_some_and(|s| s.generation == item.generation)
            {
                self.remove(&item.key);
                return true;
            }
        }
        false
    }

    /// Rebuilds a FIFO that has grown to more than twice its live entries (plus slack).
    fn compact(&mut self, tier: Tier) {
        let i = tier.index();
        if self.fifos[i].len() <= 2 * self.live[i] + 1024 {
            return;
        }
        let map = &self.map;
        self.fifos[i].retain(|item| {
            map.get(&*item.key)
                .is_some_and(|s| s.generation == item.generation)
        });
    }
}

/// The in-process hot cache.
pub struct MemoryCache {
    /// Every entry and the per-tier expiry FIFOs. Shared by the writer task (puts) and the read
    /// path (gets); held only for map operations, never across an `.await`.
    state: Mutex<State>,
    ttls: TierTtls,
    compress_over_bytes: usize,
    policy: MemoryPolicy,
    /// Shared metrics (owned by the daemon's registry): writes, evictions, memory in use.
    metrics: Arc<CacheMetrics>,
}

impl MemoryCache {
    pub fn new(config: &CacheConfig, metrics: Arc<CacheMetrics>) -> MemoryCache {
        metrics.set_budget(config.memory_budget_bytes);
        MemoryCache {
            state: Mutex::new(State::default()),
            ttls: config.ttl.clone(),
            compress_over_bytes: config.compress_over_bytes,
            policy: MemoryPolicy::from_config(config),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters for a cache; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes charged against the budget right now.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used
    }

    /// Live entries (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live entries per tier, in [`Tier::ALL`] order.
    pub fn tier_lens(&self) -> [usize; 6] {
        self.lock().live
    }

    /// Time left before `key` expires, if present.
    pub fn ttl_of(&self, key: &str) -> Option<std::time::Duration> {
        let now = Instant::now();
        let state = self.lock();
        let slot = state.map.get(key)?;
        (slot.expires > now).then(|| slot.expires - now)
    }

    /// Items in a tier's expiry FIFO (live and stale), to check it stays compact.
    #[cfg(test)]
    pub(crate) fn fifo_len(&self, tier: Tier) -> usize {
        self.lock().fifos[tier.index()].len()
    }

    /// The bytes as stored (marker byte included), for tests and debugging.
    pub fn raw(&self, key: &str) -> Option<Bytes> {
        self.lock().map.get(key).map(|s| s.value.clone())
    }

    fn insert(&self, entries: &[Entry]) -> usize {
        let now = Instant::now();
        let mut encoded = Vec::with_capacity(entries.len());
        for e in entries {
            let (value, compressed) = codec::encode(&e.value, self.compress_over_bytes);
            if compressed {
                self.metrics.compressed.inc();
            }
            encoded.push((e, value));
        }
        let mut state = self.lock();
        state.expire(now);
        for (e, value) in encoded {
            state.remove(&e.key);
            state.generation += 1;
            let generation = state.generation;
            let key: Arc<str> = Arc::from(e.key.as_str());
            let expires = now + self.ttls.get(e.tier);
            state.used += cost(&key, &value);
            state.live[e.tier.index()] += 1;
            state.fifos[e.tier.index()].push_back(FifoItem {
                key: key.clone(),
                expires,
                generation,
            });
            state.map.insert(
                key,
                Slot {
                    value,
                    tier: e.tier,
                    expires,
                    generation,
                },
            );
        }
        for tier in Tier::ALL {
            state.compact(tier);
        }
        let used = state.used;
        let evicted = if self.policy.pressure(used) == Pressure::Over {
            self.evict(&mut state)
        } else {
            Vec::new()
        };
        let after = state.used;
        drop(state);
        self.metrics.set_used(after);
        if !evicted.is_empty() {
            warn!(
                used_bytes = used,
                budget_bytes = self.policy.budget_bytes,
                after_bytes = after,
                ?evicted,
                "in-process cache over its memory budget: evicted coldest tiers first"
            );
        }
        entries.len()
    }

    /// Evicts coldest tiers first, oldest entries first, down to the warning level.
    fn evict(&self, state: &mut State) -> Vec<(Tier, u64)> {
        let mut evicted = Vec::new();
        for &tier in &self.policy.eviction_order {
            if state.used <= self.policy.warn_bytes {
                break;
            }
            let mut n = 0u64;
            while state.used > self.policy.warn_bytes && state.evict_one(tier) {
                n += 1;
            }
            if n > 0 {
                self.metrics.evicted(tier, n);
                evicted.push((tier, n));
            }
        }
        evicted
    }

    /// The stored bytes under `key`, dropping the entry if it has expired. Cheap (a refcount),
    /// so the lock is never held while decoding.
    fn stored(state: &mut State, key: &str, now: Instant) -> Option<Bytes> {
        let slot = state.map.get(key)?;
        if slot.expires <= now {
            state.remove(key);
            return None;
        }
        Some(slot.value.clone())
    }

    fn decode(&self, key: &str, stored: Option<Bytes>) -> Result<Option<Bytes>, CacheError> {
        let Some(stored) = stored else {
            return Ok(None);
        };
        codec::decode(stored).map(Some).map_err(|reason| {
            self.metrics.error("decode");
            CacheError::Corrupt {
                key: key.to_string(),
                reason,
            }
        })
    }
}

impl HotCache for MemoryCache {
    fn backend(&self) -> CacheBackend {
        CacheBackend::Memory
    }

    fn put_batch<'a>(&'a self, entries: &'a [Entry]) -> BoxFuture<'a, Result<usize, CacheError>> {
        Box::pin(async move {
            let start = std::time::Instant::now();
            let n = self.insert(entries);
            self.metrics.writes.inc_by(n as u64);
            self.metrics.batches.inc();
            self.metrics
                .batch_duration
                .observe(start.elapsed().as_secs_f64());
            Ok(n)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, CacheError>> {
        Box::pin(async move {
            let stored = MemoryCache::stored(&mut self.lock(), key, Instant::now());
            self.decode(key, stored)
        })
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Bytes>>, CacheError>> {
        Box::pin(async move {
            let now = Instant::now();
            let stored: Vec<Option<Bytes>> = {
                let mut state = self.lock();
                keys.iter()
                    .map(|k| MemoryCache::stored(&mut state, k, now))
                    .collect()
            };
            keys.iter()
                .zip(stored)
                .map(|(k, s)| self.decode(k, s))
                .collect()
        })
    }

    fn health(&self) -> BoxFuture<'_, CacheHealth> {
        Box::pin(async move {
            CacheHealth {
                backend: CacheBackend::Memory,
                mode: CacheMode::Ready,
                detail: None,
                used_memory_bytes: Some(self.used_bytes()),
                memory_budget_bytes: self.policy.budget_bytes,
            }
        })
    }

    fn memory_guard(&self) -> BoxFuture<'_, Result<GuardReport, CacheError>> {
        Box::pin(async move {
            let mut state = self.lock();
            state.expire(Instant::now());
            let before = state.used;
            let pressure = self.policy.pressure(before);
            let evicted = if pressure == Pressure::Over {
                self.evict(&mut state)
            } else {
                Vec::new()
            };
            let after = state.used;
            drop(state);
            self.metrics.set_used(after);
            Ok(GuardReport {
                pressure,
                used_bytes_before: before,
                used_bytes_after: after,
                budget_bytes: self.policy.budget_bytes,
                evicted,
            })
        })
    }
}
