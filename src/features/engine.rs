//! [`FeatureEngine`]: the per-service states of every service this replica owns, fed sample by
//! sample, reporting the buckets that close so the cache, store, forecaster and anomaly
//! detectors can react; idle services are evicted (their state handed back as bytes).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::bucket::{BucketExtras, RawRow};
use super::state::ServiceState;
use super::{FeatureError, FeatureVector, FeaturesConfig, Params};
use crate::sample::Sample;

/// Processing-time source for idle eviction, injected so tests control time.
pub trait Clock: Send + Sync {
    /// Now, epoch milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that only moves when told to (tests, benches, replays).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `ms`.
    pub fn new(ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(ms))
    }

    /// Sets the time.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::Relaxed);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A bucket that just closed: its aggregates are final, and the service's feature vector as of
/// this bucket is readable through [`FeatureEngine::features`] (newest) or
/// [`FeatureEngine::window`] (the last 24 rows, covering every bucket one call can close but
/// the oldest gap fills of a gap longer than 24 buckets).
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedBucket {
    /// The service.
    pub service_id: Arc<str>,
    /// Bucket start, epoch ms (UTC), a multiple of the bucket width.
    pub start_ms: i64,
    /// Bucket width, ms.
    pub width_ms: i64,
    /// Canonical raw aggregates (forward-filled where the bucket lacked data).
    pub row: RawRow,
    /// Response time, errors, status (not forward-filled).
    pub extras: BucketExtras,
    /// True when no sample fell in the bucket: `row` is a copy of the previous bucket's.
    pub gap_filled: bool,
    /// Closed rows of the service including this one ([`ServiceState::rows`]): this bucket's
    /// vector is `window()[len - 1 - (rows_now - rows)]` while within the last 24.
    pub rows: u64,
}

/// A service removed by [`FeatureEngine::evict_idle`], with its state to persist.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictedService {
    /// The service.
    pub service_id: Arc<str>,
    /// [`ServiceState::encode`] bytes; feed them to [`FeatureEngine::restore`] when it returns.
    pub snapshot: Vec<u8>,
}

/// Counters of an engine since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Samples observed.
    pub samples: u64,
    /// Samples whose bucket had already closed (beyond the lateness bound).
    pub late_dropped: u64,
    /// Samples stamped more than `max_future_secs` ahead of the engine clock.
    pub future_dropped: u64,
    /// Buckets closed (gap fills included).
    pub buckets_closed: u64,
    /// Closed buckets synthesised by forward fill (no sample).
    pub gap_buckets: u64,
    /// Services that got a fresh state.
    pub services_created: u64,
    /// Services removed by idle eviction.
    pub services_evicted: u64,
}

/// All per-service feature states of this replica.
pub struct FeatureEngine {
    /// The validated settings, fixed for the engine's life (snapshots record the ones that
    /// shape the state and are rejected under others).
    config: FeaturesConfig,
    /// `config` in the units the states use; shared by reference with every state.
    params: Params,
    /// Processing-time source for idle eviction and the future-timestamp guard; injected by
    /// the owner (system clock in the daemon, manual clock in tests and benches).
    clock: Arc<dyn Clock>,
    /// Service id → its boxed state (a few KiB; boxed so the map's spare slots cost a pointer).
    /// Ids up to 31 bytes sit inline in the key, so a lookup touches no other memory than the
    /// map slot and the state. Owned by the engine; states enter through `observe`/`restore`
    /// and leave through `evict_idle`/`remove`.
    services: HashMap<ServiceKey, Box<ServiceState>, KeyHashBuilder>,
    /// Counters, updated by every mutating call.
    stats: EngineStats,
}

impl FeatureEngine {
    /// An engine with a validated config and a clock for idle eviction.
    pub fn new(
        config: FeaturesConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<FeatureEngine, FeatureError> {
        config.validate()?;
        Ok(FeatureEngine {
            params: config.params(),
            config,
            clock,
            services: HashMap::with_hasher(KeyHashBuilder::random()),
            stats: EngineStats::default(),
        })
    }

    /// The config the engine runs with.
    pub fn config(&self) -> &FeaturesConfig {
        &self.config
    }

    /// Folds one sample in; returns the buckets it closed (usually none).
    pub fn observe(&mut self, sample: &Sample) -> Vec<ClosedBucket> {
        let mut out = Vec::new();
        let now = self.clock.now_ms();
        let state = Self::state_mut(
            &mut self.services,
            &mut self.stats,
            &self.params,
            &sample.service_id,
        );
        Self::fold(&mut self.stats, &self.params, state, sample, now, &mut out);
        self.count_closed(&out);
        out
    }

    /// Folds a batch in (the clock is read once); returns the buckets it closed, in order.
    /// Consecutive samples of the same service (the usual shape of a Kafka partition batch)
    /// share one map lookup.
    pub fn observe_batch(&mut self, samples: &[Sample]) -> Vec<ClosedBucket> {
        let mut out = Vec::new();
        self.observe_batch_into(samples, &mut out);
        out
    }

    /// [`observe_batch`](Self::observe_batch) appending to a caller-owned vector, so a
    /// pipeline can reuse one buffer across batches. Returns how many buckets were appended.
    ///
    /// With thousands of services each sample's state is cold in cache, and a bucket close
    /// touches some 25 more lines; taken one sample at a time those misses are paid in series.
    /// So, from [`PREFETCH_MIN_SERVICES`] services on, the batch is walked in chunks of
    /// [`PREFETCH_CHUNK`] samples: before chunk `c` is
    /// folded, the map slots and state heads of chunk `c + 1` are probed in one tight loop
    /// (the CPU overlaps those misses) and, for samples that will close a bucket, the lines
    /// the close touches are prefetched. Prefetches are hints: the fold itself is unchanged.
    pub fn observe_batch_into(&mut self, samples: &[Sample], out: &mut Vec<ClosedBucket>) -> usize {
        let first = out.len();
        let now = self.clock.now_ms();
        // Few services: their states stay cached and the extra probe would only cost.
        let prefetch = self.services.len() >= PREFETCH_MIN_SERVICES;
        let mut chunks = samples.chunks(PREFETCH_CHUNK);
        let mut cur = chunks.next();
        if let Some(c) = cur.filter(|_| prefetch) {
            self.prefetch_chunk(c);
        }
        while let Some(chunk) = cur {
            let next = chunks.next();
            if let Some(c) = next.filter(|_| prefetch) {
                self.prefetch_chunk(c);
            }
            let mut i = 0;
            while i < chunk.len() {
                let id = chunk[i].service_id.as_str();
                let state = Self::state_mut(&mut self.services, &mut self.stats, &self.params, id);
                Self::fold(&mut self.stats, &self.params, state, &chunk[i], now, out);
                i += 1;
                while i < chunk.len() && chunk[i].service_id == id {
                    Self::fold(&mut self.stats, &self.params, state, &chunk[i], now, out);
                    i += 1;
                }
            }
            cur = next;
        }
        self.count_closed(&out[first..]);
        out.len() - first
    }

    /// One map probe per sample of `chunk`, then prefetches of the state's head and, when
    /// the sample will close a bucket, of what the close touches.
    #[inline]
    fn prefetch_chunk(&self, chunk: &[Sample]) {
        for s in chunk {
            if let Some(st) = self.services.get(&ServiceKey::new(&s.service_id)) {
                st.prefetch_head();
                st.prefetch_close(s.ts_ms, &self.params);
            }
        }
    }

    #[inline]
    fn fold(
        stats: &mut EngineStats,
        params: &Params,
        state: &mut ServiceState,
        s: &Sample,
        now: i64,
        out: &mut Vec<ClosedBucket>,
    ) {
        stats.samples += 1;
        if s.ts_ms > now.saturating_add(params.max_future_ms) {
            stats.future_dropped += 1;
        } else if !state.observe(s, params, now, out) {
            stats.late_dropped += 1;
        }
    }

    fn count_closed(&mut self, out: &[ClosedBucket]) {
        self.stats.buckets_closed += out.len() as u64;
        self.stats.gap_buckets += out.iter().filter(|b| b.gap_filled).count() as u64;
    }

    /// The state of `id`, created empty if absent: one map probe (no allocation for ids up to
    /// 31 bytes).
    #[inline]
    fn state_mut<'m>(
        services: &'m mut HashMap<ServiceKey, Box<ServiceState>, KeyHashBuilder>,
        stats: &mut EngineStats,
        params: &Params,
        id: &str,
    ) -> &'m mut ServiceState {
        use std::collections::hash_map::Entry;
        match services.entry(ServiceKey::new(id)) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                stats.services_created += 1;
                e.insert(Box::new(ServiceState::with_params(params)))
            }
        }
    }

    /// Raises every service's watermark to `event_time_ms` (a global event-time watermark,
    /// e.g. the minimum over the consumed partitions) and returns the buckets that closes —
    /// so a service that went quiet still gets its last bucket (and gap buckets) closed.
    pub fn advance_to(&mut self, event_time_ms: i64) -> Vec<ClosedBucket> {
        let mut out = Vec::new();
        for (k, st) in self.services.iter_mut() {
            st.advance_to(event_time_ms, &self.params, k.as_str(), &mut out);
        }
        self.count_closed(&out);
        out
    }

    /// The newest feature vector of a service (None if unknown or no bucket closed yet).
    pub fn features(&self, service_id: &str) -> Option<FeatureVector> {
        self.state(service_id)?.features()
    }

    /// The LSTM input window of a service: its last up-to-24 feature rows, oldest first
    /// (fewer than 24 while the service is young; the forecaster then falls back).
    pub fn window(&self, service_id: &str) -> Option<Vec<FeatureVector>> {
        Some(self.state(service_id)?.window())
    }

    /// The state of a service, for inspection.
    pub fn state(&self, service_id: &str) -> Option<&ServiceState> {
        self.services
            .get(&ServiceKey::new(service_id))
            .map(|b| &**b)
    }

    /// Whether the engine holds state for `service_id` (if not, restore a snapshot before
    /// feeding its samples).
    pub fn contains(&self, service_id: &str) -> bool {
        self.services.contains_key(&ServiceKey::new(service_id))
    }

    /// Ids of the services held (any order).
    pub fn service_ids(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(ServiceKey::as_str)
    }

    /// Number of services held.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// True when no service is held.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Counters since start.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Encoded state of one service (for periodic snapshots), without removing it.
    pub fn snapshot(&self, service_id: &str) -> Option<Vec<u8>> {
        Some(self.state(service_id)?.encode(&self.config))
    }

    /// Installs a service's state from snapshot bytes (replacing any current state).
    pub fn restore(&mut self, service_id: &str, snapshot: &[u8]) -> Result<(), FeatureError> {
        let mut st = ServiceState::decode(snapshot, &self.config)?;
        st.touch(self.clock.now_ms());
        self.services
            .insert(ServiceKey::new(service_id), Box::new(st));
        Ok(())
    }

    /// Rebuilds (or extends) a service's state from stored closed buckets `(start_ms, row)`,
    /// ascending — the fallback when an evicted service returns without a usable snapshot.
    /// Rows already covered are skipped; gaps are forward-filled. Returns rows pushed.
    pub fn replay_buckets(&mut self, service_id: &str, rows: &[(i64, RawRow)]) -> usize {
        let state = Self::state_mut(
            &mut self.services,
            &mut self.stats,
            &self.params,
            service_id,
        );
        state.touch(self.clock.now_ms());
        state.replay(rows, &self.params)
    }

    /// Removes a service, returning its encoded state.
    pub fn remove(&mut self, service_id: &str) -> Option<Vec<u8>> {
        let st = self.services.remove(&ServiceKey::new(service_id))?;
        Some(st.encode(&self.config))
    }

    /// Evicts every service without a sample for `idle_evict_secs` (engine clock), returning
    /// their encoded states for the caller to persist.
    pub fn evict_idle(&mut self) -> Vec<EvictedService> {
        let cutoff = self
            .clock
            .now_ms()
            .saturating_sub(self.config.idle_evict_secs as i64 * 1000);
        let mut out = Vec::new();
        let config = &self.config;
        self.services.retain(|k, st| {
            if st.last_seen_ms() > cutoff {
                return true;
            }
            out.push(EvictedService {
                service_id: Arc::from(k.as_str()),
                snapshot: st.encode(config),
            });
            false
        });
        self.stats.services_evicted += out.len() as u64;
        if self.services.capacity() > 4 * self.services.len().max(16) {
            self.services.shrink_to_fit();
        }
        out
    }

    /// Bytes held for all services: states with their heap, the map's slots (keys inline) and
    /// long ids' heap (allocator headers not included).
    pub fn memory_bytes(&self) -> usize {
        let map =
            self.services.capacity() * (std::mem::size_of::<(ServiceKey, Box<ServiceState>)>() + 1);
        let keys: usize = self.services.keys().map(ServiceKey::heap_bytes).sum();
        let states: usize = self.services.values().map(|s| s.memory_bytes()).sum();
        map + keys + states
    }
}

/// Samples per stage of the batch prefetch pipeline ([`FeatureEngine::observe_batch_into`]):
/// enough misses in flight to fill the CPU's miss buffers, few enough that two chunks'
/// states stay in L1/L2.
const PREFETCH_CHUNK: usize = 8;

/// Below this many services the batch path does not prefetch: their states (~4 KB each)
/// fit in a core's L2, and the prefetch stage's extra map probe only added time there
/// (1000 services: ~300 → ~340-440 ns/sample).
const PREFETCH_MIN_SERVICES: usize = 2048;

/// Inline capacity of a [`ServiceKey`].
const KEY_INLINE: usize = 31;

/// A service id as a map key: inline up to 31 bytes (no allocation, compared inside the map
/// slot), boxed beyond. Hashes its bytes in one [`Hasher::write`] (see [`KeyHasher`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum ServiceKey {
    Inline { len: u8, bytes: [u8; KEY_INLINE] },
    Heap(Box<str>),
}

impl std::hash::Hash for ServiceKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
    }
}

impl ServiceKey {
    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            ServiceKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            ServiceKey::Heap(s) => s.as_bytes(),
        }
    }

    #[inline]
    fn new(id: &str) -> ServiceKey {
        if id.len() <= KEY_INLINE {
            let mut bytes = [0u8; KEY_INLINE];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            ServiceKey::Inline {
                len: id.len() as u8,
                bytes,
            }
        } else {
            ServiceKey::Heap(id.into())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Built from a &str in `new`, so always valid UTF-8.
            ServiceKey::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
            }
            ServiceKey::Heap(s) => s,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            ServiceKey::Inline { .. } => 0,
            ServiceKey::Heap(s) => s.len(),
        }
    }
}

/// Builds the [`KeyHasher`]s of the service map, all keyed with one random per-engine seed.
#[derive(Debug, Clone, Copy)]
struct KeyHashBuilder {
    seed: u64,
}

impl KeyHashBuilder {
    /// A builder with a seed drawn from the standard library's per-process randomness.
    fn random() -> KeyHashBuilder {
        KeyHashBuilder {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x6d63_7077_6174_6368u64),
        }
    }
}

impl BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;

    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { h: self.seed }
    }
}

/// Hasher of the service map: 8 bytes per folded 64×64→128-bit multiply (the scheme of
/// foldhash/wyhash), started from a random seed. SipHash was ~20 ns of each sample's lookup;
/// this is a few ns for a typical 10–30-byte id. The random seed keeps bucket placement
/// unpredictable from outside (ids come from Kafka), though unlike SipHash it is not meant
/// to resist an attacker who can observe timings adaptively.
struct KeyHasher {
    h: u64,
}

const KH_K0: u64 = 0x243f_6a88_85a3_08d3;
const KH_K1: u64 = 0x1319_8a2e_0370_7344;

#[inline]
fn folded_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.h ^ (bytes.len() as u64).wrapping_mul(KH_K1);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = folded_mul(h ^ w, KH_K0);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut t = [0u8; 8];
            t[..rest.len()].copy_from_slice(rest);
            h = folded_mul(h ^ u64::from_le_bytes(t), KH_K1);
        }
        self.h = h;
    }

    #[inline]
    fn finish(&self) -> u64 {
        folded_mul(self.h ^ KH_K1, KH_K0)
    }
}
