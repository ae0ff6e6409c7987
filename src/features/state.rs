//! Per-service incremental state: open buckets, the closed-bucket history the windows need, and
//! the running structures that keep the 82-vector current in O(1) per closed bucket.
//!
//! | structure | serves | size |
//! |---|---|---|
//! | `core` ring, 71 rows of (events f64, machines f32, cpu f32) | lags ≤ 24, moving averages ≤ 48, rolling std/min/max, changes; the windows of the 24 gathered rows (23 + 48) | 1136 B |
//! | `recent` ring, 24 rows of the other 12 aggregates + packed labels/calendar | the LSTM window (24 × 82) | 1248 B |
//! | `codes`, `history_buckets` × 3 u16 | exact trailing-window ranks of events/cpu/memory | 1008 B at 168 |
//! | 15 exact fixed-point running sums (i64) | `maK_*` | 120 B |
//! | 2 × (Σq, Σq²) exact (i64, i128) | `roll12_std`, `roll24_std` | 64 B |
//! | 4 monotonic deques of ring positions | `roll{12,24}_{max,min}` | 80 B |
//! | the oldest open bucket inline, younger ones in a vector | samples of buckets not yet closed | 176 B + 176 B per extra |
//!
//! The three summed series are binary fixed point (see `bucket.rs`), so every window sum —
//! moving averages and the Σq/Σq² of the rolling variance — is an exact integer: adding the
//! new row and subtracting the leaving one never drifts, and the results equal a from-scratch
//! recomputation (the variance to the last bit of its final division).

use std::sync::Arc;

use super::bucket::{
    OpenBucket, RawRow, A_AVG_CPU, A_AVG_MEMORY, A_MACHINES, CPU_SCALE, EVENTS_SCALE,
    MACHINES_SCALE, NO_BUCKET,
};
use super::defs::{
    assemble, code_events, code_unit, decode_events, labels_from_counts, Labels, Parts, Rank,
    TimeParts, MAS, MAX_WINDOW, ROLLS,
};
use super::engine::ClosedBucket;
use super::reference::direct_windows;
use super::{FeatureError, FeatureVector, Params};

/// Rows in the LSTM input window (`sequence_length` of the model metadata).
pub const WINDOW_ROWS: usize = 24;
/// Depth of the core ring: the longest window (48) plus the 23 rows a window gather goes back.
pub(crate) const CORE_DEPTH: usize = MAX_WINDOW + WINDOW_ROWS - 1;

/// The three series the windowed features read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct CoreRow {
    /// `total_events` (canonical, multiple of 2⁻¹⁰).
    pub events: f64,
    /// `unique_machines` (canonical, multiple of 2⁻²⁰).
    pub machines: f32,
    /// `avg_cpu` (canonical, multiple of 2⁻³⁰).
    pub cpu: f32,
}

impl CoreRow {
    #[inline]
    pub fn series(&self, s: usize) -> f64 {
        match s {
            0 => self.events,
            1 => f64::from(self.machines),
            _ => f64::from(self.cpu),
        }
    }

    /// The series as exact fixed-point integers (events in 2⁻¹⁰, machines 2⁻²⁰, cpu 2⁻³⁰).
    #[inline]
    fn fixed(&self) -> [i64; 3] {
        [
            (self.events * EVENTS_SCALE) as i64,
            (f64::from(self.machines) * MACHINES_SCALE) as i64,
            (f64::from(self.cpu) * CPU_SCALE) as i64,
        ]
    }
}

/// Fixed-point scale of each series, for turning exact sums back into values.
const SCALES: [f64; 3] = [EVENTS_SCALE, MACHINES_SCALE, CPU_SCALE];

/// Aggregate indices kept in [`RecentRow::other`] (all but machines and avg_cpu, which the
/// core ring holds).
const OTHER: [usize; 12] = [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13];

/// One row of the recent ring: what the window gather needs beyond the core ring.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct RecentRow {
    /// The aggregates at [`OTHER`] indices.
    other: [f32; 12],
    /// Labels and calendar parts, bit-packed (see [`pack`]).
    packed: u32,
}

fn pack(l: &Labels, t: &TimeParts) -> u32 {
    u32::from(l.events_q)
        | u32::from(l.cpu_q) << 4
        | u32::from(l.memory_q) << 7
        | u32::from(l.high) << 10
        | u32::from(l.low) << 11
        | u32::from(l.load_cat) << 12
        | u32::from(t.hour) << 15
        | u32::from(t.dow) << 20
        | u32::from(t.dom) << 23
}

fn unpack(p: u32) -> (Labels, TimeParts) {
    let f = |shift: u32, bits: u32| ((p >> shift) & ((1 << bits) - 1)) as u8;
    (
        Labels {
            events_q: f(0, 4),
            cpu_q: f(4, 3),
            memory_q: f(7, 3),
            high: f(10, 1) == 1,
            low: f(11, 1) == 1,
            load_cat: f(12, 3),
        },
        TimeParts {
            hour: f(15, 5),
            dow: f(20, 3),
            dom: f(23, 5),
        },
    )
}

/// Exact Σq and Σq² of the fixed-point events over a sliding window: O(1) per row (add the
/// new row, subtract the leaving one), never drifting. Bounds: |q| < 2⁵³, n ≤ 24, so
/// n·Σq² < 2¹¹⁶ and (Σq)² < 2¹¹⁶ fit i128.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct WindowMoments {
    /// Σq² as the two little-endian halves of an i128 (kept 8-byte aligned).
    s2: [u64; 2],
    /// Σq.
    s1: i64,
}

impl WindowMoments {
    #[inline]
    fn s2(&self) -> i128 {
        (i128::from(self.s2[1] as i64) << 64) | i128::from(self.s2[0])
    }

    #[inline]
    fn add(&mut self, q: i64, sign: i64) {
        self.s1 += sign * q;
        let s2 = self.s2() + i128::from(sign) * i128::from(q) * i128::from(q);
        self.s2 = [s2 as u64, (s2 >> 64) as u64];
    }

    /// Sample std (ddof 1) of the `n` values in the window; 0 for one value.
    /// `(n·Σq² − (Σq)²) / (n(n−1))` is computed exactly, then converted once.
    fn std(&self, n: u64) -> f64 {
        if n < 2 {
            return 0.0;
        }
        let n = n as i128;
        let num = n * self.s2() - i128::from(self.s1) * i128::from(self.s1);
        ((num as f64) / ((n * (n - 1)) as f64)).sqrt() / EVENTS_SCALE
    }
}

/// Monotonic deque of ring positions (sequence numbers mod 256) for a sliding max or min over
/// the last `N` buckets: amortised O(1) per push, front = the extreme.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MonoDeque<const N: usize> {
    /// Circular buffer of sequence numbers mod 256 (ages in a window ≤ 24 are unambiguous).
    buf: [u8; N],
    /// Position of the front (the current extreme).
    head: u8,
    /// Entries in use.
    len: u8,
}

impl<const N: usize> Default for MonoDeque<N> {
    fn default() -> Self {
        MonoDeque {
            buf: [0; N],
            head: 0,
            len: 0,
        }
    }
}

impl<const N: usize> MonoDeque<N> {
    /// Pushes sequence `t`; `MAX` selects a max-deque (else min).
    fn push<const MAX: bool>(&mut self, t: u64, core: &[CoreRow; CORE_DEPTH]) {
        let age = |s8: u8| (t as u8).wrapping_sub(s8) as u64;
        // Expire positions that left the window [t-N+1, t].
        while self.len > 0 && age(self.buf[self.head as usize]) >= N as u64 {
            self.head = ((self.head as usize + 1) % N) as u8;
            self.len -= 1;
        }
        let x = core[slot(t)].events;
        while self.len > 0 {
            let back = (self.head as usize + self.len as usize - 1) % N;
            let v = core[slot(t - age(self.buf[back]))].events;
            let dominated = if MAX { v <= x } else { v >= x };
            if !dominated {
                break;
            }
            self.len -= 1;
        }
        let pos = (self.head as usize + self.len as usize) % N;
        self.buf[pos] = t as u8;
        self.len += 1;
    }

    fn front(&self, t: u64, core: &[CoreRow; CORE_DEPTH]) -> f64 {
        let s8 = self.buf[self.head as usize];
        core[slot(t - (t as u8).wrapping_sub(s8) as u64)].events
    }
}

/// Cache-line size assumed by the prefetch hints.
const LINE: usize = 64;

/// Hints the CPU to bring the cache line holding `p` into L1 (x86-64; nothing elsewhere).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it never faults and has no architectural effect, so any
    // address (even a dangling one) is sound.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch`] of every line of `len` bytes from `p`.
#[inline(always)]
fn prefetch_bytes(p: *const u8, len: usize) {
    let mut off = 0;
    while off < len {
        prefetch(p.wrapping_add(off));
        off += LINE;
    }
    if len > 0 {
        prefetch(p.wrapping_add(len - 1));
    }
}

#[inline]
fn slot(seq: u64) -> usize {
    (seq % CORE_DEPTH as u64) as usize
}

/// Rank of code `x` in `codes` (values below / at most `x`), plus the range of `codes`.
/// Four plain folds over the (prefetched) codes, the counts with a 16-bit accumulator,
/// which LLVM vectorises into 8 or 16 lanes — about 1.6× faster than one fused pass with
/// per-lane counter arrays, which it did not keep in registers. 16 bits do not overflow:
/// a validated config has `history_buckets <= 8760` (longer slices count in `usize`).
#[inline]
fn rank(codes: &[u16], x: u16) -> (Rank, u16, u16) {
    let lt = count_below(codes, x);
    let le = if codes.len() <= usize::from(u16::MAX) {
        usize::from(codes.iter().fold(0u16, |a, &c| a + u16::from(c <= x)))
    } else {
        codes.iter().filter(|&&c| c <= x).count()
    };
    let lo = codes.iter().fold(u16::MAX, |a, &c| a.min(c));
    let hi = codes.iter().fold(0u16, |a, &c| a.max(c));
    (
        Rank {
            lt,
            le,
            n: codes.len(),
        },
        lo,
        hi,
    )
}

/// Number of `codes` strictly below `x` (all the quintile labels need): one fold with a
/// 16-bit accumulator (see [`rank`]), ~7× faster than the per-lane counter arrays it replaces.
#[inline]
fn count_below(codes: &[u16], x: u16) -> usize {
    if codes.len() <= usize::from(u16::MAX) {
        usize::from(codes.iter().fold(0u16, |a, &c| a + u16::from(c < x)))
    } else {
        codes.iter().filter(|&&c| c < x).count()
    }
}

/// A service id shared by the [`ClosedBucket`]s of one state (see `ServiceState::id`).
/// Equal to any other: it caches the id the engine keys the state by, it is not state.
#[derive(Debug, Clone, Default)]
struct IdCache(Option<Arc<str>>);

impl PartialEq for IdCache {
    fn eq(&self, _: &IdCache) -> bool {
        true
    }
}

impl IdCache {
    /// The cached id if it is `id` (always, as the engine keys each state by one id), else a
    /// new one, cached.
    #[inline]
    fn get(&mut self, id: &str) -> Arc<str> {
        match &self.0 {
            Some(a) if **a == *id => a.clone(),
            _ => {
                let a: Arc<str> = Arc::from(id);
                self.0 = Some(a.clone());
                a
            }
        }
    }

    /// Heap bytes of the shared id: the two reference counts and the string.
    fn heap_bytes(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |a| 2 * std::mem::size_of::<usize>() + a.len())
    }
}

/// Everything mcpwatch keeps about one service. Owned by the [`FeatureEngine`](super::FeatureEngine)
/// (boxed in its map); a check or export drives one directly through [`ServiceState::push_row`].
#[derive(Debug, Clone, PartialEq)]
#[repr(C)] // field order = memory order: the fields a sample and a close touch come first
pub struct ServiceState {
    /// The oldest bucket still accepting samples (`idx == NO_BUCKET` when none). Owned by the
    /// sample path ([`FeatureEngine::observe`](super::FeatureEngine::observe)).
    open: OpenBucket,
    /// Younger open buckets, ascending by index: only while the lateness bound overlaps a
    /// bucket boundary; empty (no allocation) otherwise. Invariant: empty when `open` is.
    more_open: Vec<OpenBucket>,
    /// Largest sample timestamp seen (event time), or a global watermark pushed by
    /// [`FeatureEngine::advance_to`](super::FeatureEngine::advance_to). Buckets whose end plus the
    /// lateness bound is at or before it are closed.
    watermark_ms: i64,
    /// Index of the last closed bucket (`i64::MIN` before the first).
    last_closed_idx: i64,
    /// Processing time of the last sample, from the engine's clock: idle eviction.
    last_seen_ms: i64,
    /// Samples that arrived after their bucket had closed (counted, not applied).
    late_dropped: u64,
    /// Number of closed rows pushed; row `t` lives at ring positions derived from `t`.
    pushed: u64,
    /// Start of the newest closed row (epoch ms).
    last_start_ms: i64,
    /// Rank codes of the last `history_buckets` rows: events, then cpu, then memory, each
    /// `history_buckets` long, ring position `t % history_buckets`. Written by `push_row`.
    codes: Box<[u16]>,
    /// The service id handed out in every [`ClosedBucket::service_id`] of this state, made on
    /// the first close instead of allocating one per closed bucket. Written by `close_row`;
    /// a cache, not state: neither encoded nor compared.
    id: IdCache,
    /// `ma[series][i]`: exact fixed-point sum over the last `MAS[i]` rows. Written by `push_row`.
    ma: [[i64; 5]; 3],
    /// Exact Σq, Σq² of events over the last 12 and 24 rows. Written by `push_row`.
    var: [WindowMoments; 2],
    /// Sliding max of events over the last 12 rows (`roll12_max`). Written by `push_row`.
    max12: MonoDeque<12>,
    /// Sliding min of events over the last 12 rows (`roll12_min`). Written by `push_row`.
    min12: MonoDeque<12>,
    /// Sliding max of events over the last 24 rows (`roll24_max`). Written by `push_row`.
    max24: MonoDeque<24>,
    /// Sliding min of events over the last 24 rows (`roll24_min`). Written by `push_row`.
    min24: MonoDeque<24>,
    /// Core ring (events, machines, cpu) of the last [`CORE_DEPTH`] rows, written by `push_row`.
    core: [CoreRow; CORE_DEPTH],
    /// Other aggregates + labels + calendar of the last [`WINDOW_ROWS`] rows, written by `push_row`.
    recent: [RecentRow; WINDOW_ROWS],
}

impl ServiceState {
    /// An empty state for the given config.
    pub fn new(config: &super::FeaturesConfig) -> ServiceState {
        ServiceState::with_params(&config.params())
    }

    pub(crate) fn with_params(p: &Params) -> ServiceState {
        ServiceState {
            open: OpenBucket::default(),
            more_open: Vec::new(),
            watermark_ms: i64::MIN,
            last_closed_idx: i64::MIN,
            last_seen_ms: i64::MIN,
            late_dropped: 0,
            pushed: 0,
            last_start_ms: 0,
            id: IdCache::default(),
            core: [CoreRow::default(); CORE_DEPTH],
            recent: [RecentRow::default(); WINDOW_ROWS],
            codes: vec![0u16; 3 * p.history].into_boxed_slice(),
            ma: [[0; 5]; 3],
            var: [WindowMoments::default(); 2],
            max12: MonoDeque::default(),
            min12: MonoDeque::default(),
            max24: MonoDeque::default(),
            min24: MonoDeque::default(),
        }
    }

    /// Closed rows so far.
    pub fn rows(&self) -> u64 {
        self.pushed
    }

    /// Samples dropped because their bucket had already closed.
    pub fn late_dropped(&self) -> u64 {
        self.late_dropped
    }

    /// Processing time (engine clock) of the last sample.
    pub fn last_seen_ms(&self) -> i64 {
        self.last_seen_ms
    }

    /// Marks the state as used at processing time `now_ms` (restored or replayed), so idle
    /// eviction counts from now.
    pub(crate) fn touch(&mut self, now_ms: i64) {
        self.last_seen_ms = now_ms;
    }

    /// Start (epoch ms) of the newest closed bucket, if any.
    pub fn last_bucket_start_ms(&self) -> Option<i64> {
        (self.pushed > 0).then_some(self.last_start_ms)
    }

    /// Bytes this state occupies: the struct plus everything it owns on the heap
    /// (allocator headers not included).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.codes.len() * 2
            + self.more_open.capacity() * std::mem::size_of::<OpenBucket>()
            + self.open.heap_bytes()
            + self.id.heap_bytes()
            + self
                .more_open
                .iter()
                .map(OpenBucket::heap_bytes)
                .sum::<usize>()
    }

    // ----- prefetch (batch path) -----------------------------------------------------------

    /// Starts loading the lines every sample touches (the inline open bucket, watermarks and
    /// the pointers of the state), so [`FeatureEngine::observe_batch`](super::FeatureEngine::observe_batch)
    /// can overlap the cache misses of the next samples' states instead of taking them one by
    /// one. A hint only: no effect on results.
    #[inline]
    pub(crate) fn prefetch_head(&self) {
        let end = std::mem::offset_of!(ServiceState, ma);
        prefetch_bytes((self as *const ServiceState).cast(), end);
    }

    /// If a sample stamped `ts_ms` will close a bucket of this state, starts loading what the
    /// close reads and writes (`push_row`): the three rank-code windows, the running sums and
    /// deques, the ring slots of the new row, of the previous row and of the rows leaving each
    /// moving window. Reads only the head, which [`prefetch_head`](Self::prefetch_head) should
    /// have brought in. A hint only: no effect on results.
    #[inline]
    pub(crate) fn prefetch_close(&self, ts_ms: i64, p: &Params) {
        if !self.more_open.is_empty() {
            prefetch_bytes(
                self.more_open.as_ptr().cast(),
                std::mem::size_of::<OpenBucket>(),
            );
        }
        if ts_ms <= self.watermark_ms {
            return;
        }
        let limit = ts_ms.saturating_sub(p.lateness_ms).div_euclid(p.width_ms);
        let next = if self.last_closed_idx == i64::MIN {
            self.open.idx
        } else {
            self.last_closed_idx + 1
        };
        if next == NO_BUCKET || next >= limit {
            return;
        }
        if let Some(a) = &self.id.0 {
            prefetch(Arc::as_ptr(a).cast::<u8>());
        }
        let t = self.pushed;
        let h = p.history;
        let n = (t + 1).min(h as u64) as usize;
        for k in 0..3 {
            if let Some(codes) = self.codes.get(k * h..k * h + n) {
                prefetch_bytes(codes.as_ptr().cast(), 2 * n);
            }
        }
        let base = (self as *const ServiceState).cast::<u8>();
        let sums = std::mem::offset_of!(ServiceState, ma);
        let core = std::mem::offset_of!(ServiceState, core);
        prefetch_bytes(base.wrapping_add(sums), core - sums);
        prefetch(&self.core[slot(t)]);
        let w = WINDOW_ROWS as u64;
        prefetch_bytes(
            (&self.recent[(t % w) as usize] as *const RecentRow).cast(),
            std::mem::size_of::<RecentRow>(),
        );
        if t > 0 {
            prefetch(&self.core[slot(t - 1)]);
            prefetch_bytes(
                (&self.recent[((t - 1) % w) as usize] as *const RecentRow).cast(),
                std::mem::size_of::<RecentRow>(),
            );
        }
        for k in MAS {
            if t >= k as u64 {
                prefetch(&self.core[slot(t - k as u64)]);
            }
        }
    }

    // ----- sample path -------------------------------------------------------------------

    /// Folds a sample in and closes every bucket the advanced watermark allows, appending them
    /// to `out`. Returns false when the sample was late (its bucket had closed).
    pub(crate) fn observe(
        &mut self,
        s: &crate::sample::Sample,
        p: &Params,
        now_ms: i64,
        out: &mut Vec<ClosedBucket>,
    ) -> bool {
        self.last_seen_ms = now_ms;
        let idx = s.ts_ms.div_euclid(p.width_ms);
        let closes_at = idx
            .saturating_add(1)
            .saturating_mul(p.width_ms)
            .saturating_add(p.lateness_ms);
        if closes_at <= self.watermark_ms || idx <= self.last_closed_idx {
            self.late_dropped += 1;
            return false;
        }
        // Close what the advanced watermark allows first (never this sample's own bucket:
        // ts < its end), so the common boundary crossing reuses the inline slot.
        if s.ts_ms > self.watermark_ms {
            self.watermark_ms = s.ts_ms;
            self.close_ready(p, &s.service_id, out);
        }
        self.bucket_for(idx).push(s);
        true
    }

    /// The open bucket with index `idx`, created if needed (keeping `open` the oldest).
    #[inline]
    fn bucket_for(&mut self, idx: i64) -> &mut OpenBucket {
        if self.open.idx == idx {
            return &mut self.open;
        }
        if self.open.idx == NO_BUCKET {
            self.open.idx = idx; // the slot is reset when its bucket closes
            return &mut self.open;
        }
        if idx < self.open.idx {
            let older = std::mem::replace(&mut self.open, OpenBucket::new(idx));
            self.more_open.reserve_exact(1);
            self.more_open.insert(0, older);
            return &mut self.open;
        }
        match self.more_open.binary_search_by_key(&idx, |b| b.idx) {
            Ok(i) => &mut self.more_open[i],
            Err(i) => {
                self.more_open.reserve_exact(1);
                self.more_open.insert(i, OpenBucket::new(idx));
                &mut self.more_open[i]
            }
        }
    }

    /// Raises the watermark to `event_time_ms` (if later) and closes what that allows.
    pub(crate) fn advance_to(
        &mut self,
        event_time_ms: i64,
        p: &Params,
        id: &str,
        out: &mut Vec<ClosedBucket>,
    ) {
        if event_time_ms > self.watermark_ms {
            self.watermark_ms = event_time_ms;
            self.close_ready(p, id, out);
        }
    }

    /// Closes, in order, every bucket with `end + lateness <= watermark`, synthesising missing
    /// buckets between closed ones by forward fill (at most `history_buckets` of a long gap:
    /// older copies would be outside every window by the time the next real bucket closes).
    fn close_ready(&mut self, p: &Params, id: &str, out: &mut Vec<ClosedBucket>) {
        let limit = self
            .watermark_ms
            .saturating_sub(p.lateness_ms)
            .div_euclid(p.width_ms);
        loop {
            let next_open = (self.open.idx != NO_BUCKET).then_some(self.open.idx);
            if self.last_closed_idx == i64::MIN {
                match next_open {
                    Some(i) if i < limit => self.close_first_open(p, id, out),
                    _ => break,
                }
                continue;
            }
            let next = self.last_closed_idx + 1;
            if next >= limit {
                break;
            }
            if next_open == Some(next) {
                self.close_first_open(p, id, out);
                continue;
            }
            let end = next_open.map_or(limit, |i| i.min(limit));
            let start = next.max(end - p.history as i64);
            for g in start..end {
                let row = self.last_row().unwrap_or_default();
                self.close_row(g, row, Default::default(), true, p, id, out);
            }
            self.last_closed_idx = end - 1;
        }
    }

    fn close_first_open(&mut self, p: &Params, id: &str, out: &mut Vec<ClosedBucket>) {
        let (idx, fields, extras) = (self.open.idx, self.open.fields(), self.open.extras());
        if self.more_open.is_empty() {
            self.open.reset();
        } else {
            self.open = self.more_open.remove(0);
            if self.more_open.is_empty() {
                self.more_open = Vec::new();
            }
        }
        let prev = self.last_row();
        let row = RawRow::fill(&fields, prev.as_ref());
        self.close_row(idx, row, extras, false, p, id, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn close_row(
        &mut self,
        idx: i64,
        row: RawRow,
        extras: super::BucketExtras,
        gap_filled: bool,
        p: &Params,
        id: &str,
        out: &mut Vec<ClosedBucket>,
    ) {
        let start_ms = idx * p.width_ms;
        self.push_row_p(start_ms, &row, p);
        self.last_closed_idx = idx;
        out.push(ClosedBucket {
            service_id: self.id.get(id),
            start_ms,
            width_ms: p.width_ms,
            row,
            extras,
            gap_filled,
            rows: self.pushed,
        });
    }

    /// Appends stored closed buckets (e.g. from PostgreSQL when no snapshot exists) as if they
    /// had closed live: rows at or before the last closed bucket are skipped, gaps are
    /// forward-filled, and the watermark moves past each bucket's close time. Returns the
    /// number of rows pushed (gap fills included).
    pub(crate) fn replay(&mut self, rows: &[(i64, RawRow)], p: &Params) -> usize {
        let before = self.pushed;
        for (start_ms, row) in rows {
            let idx = start_ms.div_euclid(p.width_ms);
            if idx <= self.last_closed_idx {
                continue;
            }
            if self.last_closed_idx != i64::MIN {
                let start = (self.last_closed_idx + 1).max(idx - p.history as i64);
                for g in start..idx {
                    let prev = self.last_row().unwrap_or_default();
                    self.push_row_p(g * p.width_ms, &prev, p);
                }
            }
            self.push_row_p(idx * p.width_ms, row, p);
            self.last_closed_idx = idx;
            let closes_at = (idx + 1)
                .saturating_mul(p.width_ms)
                .saturating_add(p.lateness_ms);
            self.watermark_ms = self.watermark_ms.max(closes_at);
        }
        // Open buckets older than what was replayed can no longer close in order: drop them.
        while self.open.idx != NO_BUCKET && self.open.idx <= self.last_closed_idx {
            self.open = if self.more_open.is_empty() {
                OpenBucket::default()
            } else {
                self.more_open.remove(0)
            };
        }
        (self.pushed - before) as usize
    }

    /// The newest closed row, if any.
    pub fn last_row(&self) -> Option<RawRow> {
        (self.pushed > 0).then(|| self.raw_at(self.pushed - 1))
    }

    fn raw_at(&self, seq: u64) -> RawRow {
        let c = &self.core[slot(seq)];
        let r = &self.recent[(seq % WINDOW_ROWS as u64) as usize];
        let mut row = RawRow {
            total_events: c.events,
            aggregates: [0.0; 14],
        };
        row.aggregates[A_MACHINES] = c.machines;
        row.aggregates[A_AVG_CPU] = c.cpu;
        for (k, &i) in OTHER.iter().enumerate() {
            row.aggregates[i] = r.other[k];
        }
        row
    }

    // ----- row path ----------------------------------------------------------------------

    /// Appends one closed bucket (start time, canonical raw row) and updates every running
    /// structure in O(1) (plus one vectorised pass over the rank codes). The engine calls this
    /// when a bucket closes; `check`/`export` and a rebuild from stored buckets call it directly.
    /// Rows are taken as consecutive: gaps must already be filled by the caller.
    pub fn push_row(&mut self, start_ms: i64, row: &RawRow, config: &super::FeaturesConfig) {
        self.push_row_p(start_ms, row, &config.params());
    }

    pub(crate) fn push_row_p(&mut self, start_ms: i64, row: &RawRow, p: &Params) {
        let t = self.pushed;
        let h = p.history;
        // Rank window: overwrite the oldest code, rank the new one against the last n.
        let ci = (t % h as u64) as usize;
        let ev_code = code_events(row.total_events);
        self.codes[ci] = ev_code;
        self.codes[h + ci] = code_unit(row.aggregates[A_AVG_CPU]);
        self.codes[2 * h + ci] = code_unit(row.aggregates[A_AVG_MEMORY]);
        let n = (t + 1).min(h as u64) as usize;
        let (ev, lo, hi) = rank(&self.codes[..n], ev_code);
        // The quintile labels read only `lt`; `le` is never used for cpu/memory.
        let cpu = Rank {
            lt: count_below(&self.codes[h..h + n], self.codes[h + ci]),
            le: 0,
            n,
        };
        let mem = Rank {
            lt: count_below(&self.codes[2 * h..2 * h + n], self.codes[2 * h + ci]),
            le: 0,
            n,
        };
        let labels = labels_from_counts(
            ev,
            cpu,
            mem,
            decode_events(ev_code),
            decode_events(lo),
            decode_events(hi),
        );

        // Core ring.
        let x = CoreRow {
            events: row.total_events,
            machines: row.aggregates[A_MACHINES],
            cpu: row.aggregates[A_AVG_CPU],
        };
        self.core[slot(t)] = x;

        // Moving sums and rolling Σq/Σq²: add the new row, subtract the one leaving each window.
        // Exact integers, so no drift and no resynchronisation.
        let q = x.fixed();
        for (i, &k) in MAS.iter().enumerate() {
            let old = if t >= k as u64 {
                self.core[slot(t - k as u64)].fixed()
            } else {
                [0; 3]
            };
            for series in 0..3 {
                self.ma[series][i] += q[series] - old[series];
            }
        }
        for (i, &k) in ROLLS.iter().enumerate() {
            self.var[i].add(q[0], 1);
            if t >= k as u64 {
                self.var[i].add(self.core[slot(t - k as u64)].fixed()[0], -1);
            }
        }
        self.max12.push::<true>(t, &self.core);
        self.min12.push::<false>(t, &self.core);
        self.max24.push::<true>(t, &self.core);
        self.min24.push::<false>(t, &self.core);

        // Recent ring: the rest of the row, labels and calendar for the window gather.
        let mut other = [0f32; 12];
        for (k, &i) in OTHER.iter().enumerate() {
            other[k] = row.aggregates[i];
        }
        self.recent[(t % WINDOW_ROWS as u64) as usize] = RecentRow {
            other,
            packed: pack(&labels, &TimeParts::at(start_ms, p.utc_offset_secs)),
        };

        self.pushed = t + 1;
        self.last_start_ms = start_ms;
    }

    // ----- reading -----------------------------------------------------------------------

    /// The feature vector of the newest closed bucket, from the running structures (O(82)).
    pub fn features(&self) -> Option<FeatureVector> {
        (self.pushed > 0).then(|| self.current_vector())
    }

    fn current_vector(&self) -> FeatureVector {
        let t = self.pushed - 1;
        let (labels, time) = unpack(self.recent[(t % WINDOW_ROWS as u64) as usize].packed);
        let mut parts = Parts {
            row: self.raw_at(t),
            time,
            labels,
            ..Parts::default()
        };
        for (i, &k) in super::defs::LAGS.iter().enumerate() {
            let c = &self.core[slot(t.saturating_sub(k as u64))];
            parts.lags[i] = [c.series(0), c.series(1), c.series(2)];
        }
        for (i, &k) in MAS.iter().enumerate() {
            let n = (t + 1).min(k as u64) as f64;
            for (s, (sums, scale)) in self.ma.iter().zip(SCALES).enumerate() {
                parts.mas[i][s] = (sums[i] as f64 / scale) / n;
            }
        }
        let n12 = (t + 1).min(12);
        let n24 = (t + 1).min(24);
        parts.rolls[0] = [
            self.var[0].std(n12),
            self.max12.front(t, &self.core),
            self.min12.front(t, &self.core),
        ];
        parts.rolls[1] = [
            self.var[1].std(n24),
            self.max24.front(t, &self.core),
            self.min24.front(t, &self.core),
        ];
        assemble(&parts)
    }

    /// The feature vector of the bucket `age` rows before the newest (0 = newest), recomputed
    /// directly from the stored history; `None` beyond [`WINDOW_ROWS`] rows or the rows that exist.
    pub fn features_at_age(&self, age: usize) -> Option<FeatureVector> {
        if age >= WINDOW_ROWS || age as u64 >= self.pushed {
            return None;
        }
        if age == 0 {
            return Some(self.current_vector());
        }
        let t = self.pushed - 1 - age as u64;
        let (labels, time) = unpack(self.recent[(t % WINDOW_ROWS as u64) as usize].packed);
        let (lags, mas, rolls) = direct_windows(|q| self.core[slot(q)], t);
        Some(assemble(&Parts {
            row: self.raw_at(t),
            time,
            labels,
            lags,
            mas,
            rolls,
        }))
    }

    /// The last `min(WINDOW_ROWS, rows())` feature vectors, oldest first: the LSTM input window.
    pub fn window(&self) -> Vec<FeatureVector> {
        let n = (self.pushed as usize).min(WINDOW_ROWS);
        (0..n)
            .rev()
            .filter_map(|age| self.features_at_age(age))
            .collect()
    }

    // ----- snapshot ----------------------------------------------------------------------

    /// Compact, versioned bytes of the whole state (open buckets included) for Redis/PostgreSQL.
    /// The monotonic deques are rebuilt on decode (their content is a function of the window);
    /// everything else is stored as is, so a decoded state behaves exactly like the original and
    /// re-encodes to the same bytes.
    pub fn encode(&self, config: &super::FeaturesConfig) -> Vec<u8> {
        let p = config.params();
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&(p.history as u32).to_le_bytes());
        out.extend_from_slice(&p.width_ms.to_le_bytes());
        out.extend_from_slice(&p.utc_offset_secs.to_le_bytes());
        for v in [self.watermark_ms, self.last_closed_idx, self.last_seen_ms] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.late_dropped, self.pushed] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.last_start_ms.to_le_bytes());
        let used = |depth: usize| (self.pushed.min(depth as u64)) as usize;
        for c in &self.core[..used(CORE_DEPTH)] {
            out.extend_from_slice(&c.events.to_le_bytes());
            out.extend_from_slice(&c.machines.to_le_bytes());
            out.extend_from_slice(&c.cpu.to_le_bytes());
        }
        for r in &self.recent[..used(WINDOW_ROWS)] {
            for v in r.other {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&r.packed.to_le_bytes());
        }
        let h = p.history;
        for s in 0..3 {
            for c in &self.codes[s * h..s * h + used(h)] {
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        for k in self.ma.iter().flatten() {
            out.extend_from_slice(&k.to_le_bytes());
        }
        for v in &self.var {
            out.extend_from_slice(&v.s1.to_le_bytes());
            out.extend_from_slice(&v.s2().to_le_bytes());
        }
        let open: Vec<&OpenBucket> = std::iter::once(&self.open)
            .filter(|b| b.idx != NO_BUCKET)
            .chain(&self.more_open)
            .collect();
        out.push(open.len() as u8);
        for b in open {
            b.encode(&mut out);
        }
        out
    }

    /// Rebuilds a state from [`encode`](Self::encode)'s bytes. Fails on corrupt input, an
    /// unknown version, or bucket settings different from `config` (then rebuild from history).
    pub fn decode(
        bytes: &[u8],
        config: &super::FeaturesConfig,
    ) -> Result<ServiceState, FeatureError> {
        let p = config.params();
        let mut r = Reader { b: bytes, pos: 0 };
        if r.bytes(4)? != SNAPSHOT_MAGIC {
            return Err(FeatureError::Snapshot(
                "not a feature-state snapshot (bad magic)".into(),
            ));
        }
        let version = r.u8()?;
        if version != SNAPSHOT_VERSION {
            return Err(FeatureError::Snapshot(format!(
                "version {version} is not supported (this build reads {SNAPSHOT_VERSION})"
            )));
        }
        let history = r.u32()? as i64;
        let width_ms = r.i64()?;
        let utc = r.i32()?;
        for (what, expected, found) in [
            ("history_buckets", p.history as i64, history),
            ("bucket_width_ms", p.width_ms, width_ms),
            (
                "utc_offset_secs",
                i64::from(p.utc_offset_secs),
                i64::from(utc),
            ),
        ] {
            if expected != found {
                return Err(FeatureError::SnapshotMismatch {
                    what,
                    expected,
                    found,
                });
            }
        }
        let mut s = ServiceState::with_params(&p);
        s.watermark_ms = r.i64()?;
        s.last_closed_idx = r.i64()?;
        s.last_seen_ms = r.i64()?;
        s.late_dropped = r.u64()?;
        s.pushed = r.u64()?;
        s.last_start_ms = r.i64()?;
        let used = |depth: usize| (s.pushed.min(depth as u64)) as usize;
        for i in 0..used(CORE_DEPTH) {
            s.core[i] = CoreRow {
                events: r.f64()?,
                machines: r.f32()?,
                cpu: r.f32()?,
            };
        }
        for i in 0..used(WINDOW_ROWS) {
            let mut other = [0f32; 12];
            for v in other.iter_mut() {
                *v = r.f32()?;
            }
            let packed = r.u32()?;
            if packed >> 28 != 0 {
                return Err(r.corrupt("packed labels out of range"));
            }
            s.recent[i] = RecentRow { other, packed };
        }
        let h = p.history;
        for k in 0..3 {
            for i in 0..used(h) {
                s.codes[k * h + i] = r.u16()?;
            }
        }
        for k in s.ma.iter_mut().flatten() {
            *k = r.i64()?;
        }
        for v in s.var.iter_mut() {
            let (s1, s2) = (r.i64()?, r.i128()?);
            *v = WindowMoments {
                s1,
                s2: [s2 as u64, (s2 >> 64) as u64],
            };
        }
        let n_open = r.u8()?;
        let mut last = s.last_closed_idx;
        for i in 0..n_open {
            let b = OpenBucket::decode(&mut r)?;
            if b.idx == NO_BUCKET || b.idx <= last {
                return Err(r.corrupt("open buckets out of order"));
            }
            last = b.idx;
            if i == 0 {
                s.open = b;
            } else {
                s.more_open.push(b);
            }
        }
        if r.pos != bytes.len() {
            return Err(r.corrupt("trailing bytes"));
        }
        // Rebuild the deques by replaying the last 24 rows (their content depends only on the
        // values in the window).
        for t in s.pushed.saturating_sub(24)..s.pushed {
            s.max12.push::<true>(t, &s.core);
            s.min12.push::<false>(t, &s.core);
            s.max24.push::<true>(t, &s.core);
            s.min24.push::<false>(t, &s.core);
        }
        Ok(s)
    }
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"MWFS";
/// Bumped whenever the snapshot layout changes; older snapshots are then rejected and the
/// state is rebuilt from stored buckets.
const SNAPSHOT_VERSION: u8 = 1;

/// Little-endian reader over snapshot bytes.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], FeatureError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(end) => {
                let s = &self.b[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.corrupt("truncated")),
        }
    }

    pub fn corrupt(&self, what: &str) -> FeatureError {
        FeatureError::Snapshot(format!("{what} at byte {}", self.pos))
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], FeatureError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, FeatureError> {
        Ok(self.bytes(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, FeatureError> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    pub fn u32(&mut self) -> Result<u32, FeatureError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub fn i32(&mut self) -> Result<i32, FeatureError> {
        Ok(i32::from_le_bytes(self.arr()?))
    }
    pub fn u64(&mut self) -> Result<u64, FeatureError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    pub fn i64(&mut self) -> Result<i64, FeatureError> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    pub fn i128(&mut self) -> Result<i128, FeatureError> {
        Ok(i128::from_le_bytes(self.arr()?))
    }
    pub fn f32(&mut self) -> Result<f32, FeatureError> {
        Ok(f32::from_le_bytes(self.arr()?))
    }
    pub fn f64(&mut self) -> Result<f64, FeatureError> {
        Ok(f64::from_le_bytes(self.arr()?))
    }
}
