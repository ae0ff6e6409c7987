//! Per-bucket aggregates folded from [`Sample`]s (SPEC §2 table), and the canonical closed row.
//!
//! An `OpenBucket` accumulates one service's samples for one time bucket in O(1) per sample.
//! When the bucket closes it becomes a [`RawRow`] — `total_events` plus the 14 raw model
//! aggregates — after forward-filling every field the bucket had no data for from the previous
//! row (then 0), and [`BucketExtras`] (response time, errors, status: kept as their own series,
//! not used by the model).
//!
//! Canonical form (applied when a bucket closes; every later computation — the live vector,
//! the stored history, the from-scratch reference — uses these values, so they agree exactly):
//! - the 14 aggregates are rounded to `f32` (the LSTM consumes `f32`; it halves the history);
//! - the three summed series are binary fixed point, so every moving sum is an exact integer:
//!   `total_events` (kept as `f64`) is a multiple of 2⁻¹⁰, `unique_machines` of 2⁻²⁰ and
//!   `avg_cpu` of 2⁻³⁰ (changes below 5·10⁻⁴ events, 5·10⁻⁷ machines and 5·10⁻¹⁰ cpu; the
//!   seed's observed rows are unchanged).

use crate::sample::{Sample, Status};

/// Index of each aggregate in [`RawRow::aggregates`] (= its index in the feature vector).
pub(crate) const A_MACHINES: usize = 0;
pub(crate) const A_ADD: usize = 1;
pub(crate) const A_REMOVE: usize = 2;
pub(crate) const A_UPDATE: usize = 3;
pub(crate) const A_AVG_CPU: usize = 4;
pub(crate) const A_AVG_MEMORY: usize = 5;
pub(crate) const A_STD_CPU: usize = 6;
pub(crate) const A_STD_MEMORY: usize = 7;
pub(crate) const A_MIN_CPU: usize = 8;
pub(crate) const A_MAX_CPU: usize = 9;
pub(crate) const A_MIN_MEMORY: usize = 10;
pub(crate) const A_MAX_MEMORY: usize = 11;
pub(crate) const A_SWITCHES: usize = 12;
pub(crate) const A_PLATFORMS: usize = 13;

/// The canonical raw aggregates of one closed bucket.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RawRow {
    /// `total_events`: sum of `requests` in the bucket, or the number of samples when none
    /// carried a request counter. The default forecast target; not one of the 82 features.
    pub total_events: f64,
    /// The 14 raw model features, in [`FEATURE_NAMES`](super::FEATURE_NAMES)`[0..14]` order:
    /// `unique_machines, add_events, remove_events, update_events, avg_cpu, avg_memory, std_cpu,
    /// std_memory, min_cpu, max_cpu, min_memory, max_memory, unique_switches, unique_platforms`.
    pub aggregates: [f32; 14],
}

impl RawRow {
    /// Builds a canonical row from 15 values given as `f64` (a CSV row, a stored bucket):
    /// non-finite values count as missing and are taken from `prev` (forward fill), else 0.
    pub fn from_values(total_events: f64, aggregates: &[f64; 14], prev: Option<&RawRow>) -> RawRow {
        let mut fields = [None; 15];
        fields[0] = Some(total_events).filter(|v| v.is_finite());
        for (i, v) in aggregates.iter().enumerate() {
            fields[i + 1] = Some(*v).filter(|v| v.is_finite());
        }
        RawRow::fill(&fields, prev)
    }

    /// Forward-fill then 0: each missing field takes the previous row's value, or 0 without one.
    /// Present values are brought to the canonical form (module docs).
    pub(crate) fn fill(fields: &[Option<f64>; 15], prev: Option<&RawRow>) -> RawRow {
        let mut row = RawRow {
            total_events: match fields[0] {
                Some(v) => canon_events(v),
                None => prev.map_or(0.0, |p| p.total_events),
            },
            aggregates: [0.0; 14],
        };
        for i in 0..14 {
            row.aggregates[i] = match fields[i + 1] {
                Some(v) if i == A_MACHINES => canon_machines(v),
                Some(v) if i == A_AVG_CPU => canon_cpu(v),
                Some(v) => v as f32,
                None => prev.map_or(0.0, |p| p.aggregates[i]),
            };
        }
        row
    }

    /// An aggregate as `f64`.
    #[inline]
    pub(crate) fn agg(&self, i: usize) -> f64 {
        f64::from(self.aggregates[i])
    }
}

/// Fixed-point scale of `total_events` (multiples of 2⁻¹⁰).
pub(crate) const EVENTS_SCALE: f64 = 1024.0;
/// Fixed-point scale of `unique_machines` (multiples of 2⁻²⁰).
pub(crate) const MACHINES_SCALE: f64 = 1_048_576.0;
/// Fixed-point scale of `avg_cpu` (multiples of 2⁻³⁰).
pub(crate) const CPU_SCALE: f64 = 1_073_741_824.0;
/// Each series is clamped so its fixed-point integers stay below 2⁵³ (exact in `f64`, and a
/// 48-row sum fits `i64`): events ±2⁴³ per bucket, machines ±2³³, cpu ±2²³ (a fraction).
const EVENTS_LIMIT: f64 = 8_796_093_022_208.0;
const MACHINES_LIMIT: f64 = 8_589_934_592.0;
const CPU_LIMIT: f64 = 8_388_608.0;

fn fixed_point(x: f64, scale: f64, limit: f64) -> f64 {
    (x.clamp(-limit, limit) * scale).round() / scale
}

/// Canonical `total_events`: nearest multiple of 2⁻¹⁰ within ±2⁴³.
pub(crate) fn canon_events(x: f64) -> f64 {
    fixed_point(x, EVENTS_SCALE, EVENTS_LIMIT)
}

/// Canonical `unique_machines`: nearest multiple of 2⁻²⁰ within ±2³³, as `f32`. Rounding to
/// f32 keeps it on the grid (f32 holds every multiple of 2⁻²⁰ below 2⁴, and above, its own
/// spacing is a coarser power of two).
pub(crate) fn canon_machines(x: f64) -> f32 {
    fixed_point(x, MACHINES_SCALE, MACHINES_LIMIT) as f32
}

/// Canonical cpu: `f32`, then the nearest multiple of 2⁻³⁰ (exact in f32: at most 24
/// significant bits below 2⁻⁶, and f32's own spacing is already ≥ 2⁻³⁰ above).
pub(crate) fn canon_cpu(x: f64) -> f32 {
    let x = f64::from(x.clamp(-CPU_LIMIT, CPU_LIMIT) as f32);
    ((x * CPU_SCALE).round() / CPU_SCALE) as f32
}

/// The per-bucket series kept beside the model aggregates (SPEC §2: "Response time, errors and
/// status are kept as their own series"). Not forward-filled: `None` means no data.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BucketExtras {
    /// Samples folded into the bucket (0 for a gap bucket synthesised by forward fill).
    pub samples: u32,
    /// Mean `response_time_ms` over the samples that carried one.
    pub avg_response_ms: Option<f64>,
    /// Largest `response_time_ms`.
    pub max_response_ms: Option<f64>,
    /// Sum of `errors` (0 when no sample carried an error counter).
    pub errors: f64,
    /// Worst status seen (down > degraded > healthy).
    pub worst_status: Option<Status>,
    /// Whether a sample in the bucket carried `cpu` (else the row's value is forward-filled);
    /// the anomaly detectors only look at observed values.
    pub has_cpu: bool,
    /// Whether a sample carried `memory` (else the row's value is forward-filled).
    pub has_memory: bool,
    /// Whether a sample carried `requests` (else `total_events` is the sample count).
    pub has_requests: bool,
}

/// Running count/mean/M2 (Welford) and min/max, O(1) per value. min/max are kept as `f32`:
/// rounding is monotonic, so they equal the f32-rounded true extremes the row stores anyway.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Moments {
    /// Running mean.
    pub mean: f64,
    /// Running Σ(x − mean)² (Welford).
    pub m2: f64,
    /// Values seen.
    pub n: u32,
    /// Smallest value (f32, see above).
    pub min: f32,
    /// Largest value.
    pub max: f32,
}

impl Default for Moments {
    fn default() -> Self {
        Moments {
            n: 0,
            mean: 0.0,
            m2: 0.0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }
}

impl Moments {
    #[inline]
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / f64::from(self.n);
        self.m2 += d * (x - self.mean);
        let xf = x as f32;
        self.min = self.min.min(xf);
        self.max = self.max.max(xf);
    }

    /// Sample standard deviation (ddof = 1, pandas' default); 0 for a single value.
    pub fn std(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2.max(0.0) / f64::from(self.n - 1)).sqrt()
        }
    }
}

/// 32-bit hash of an identifier (instance id, host, platform) for the distinct counters:
/// 8 bytes at a time, finished with MurmurHash3's 64-bit avalanche. It is written into
/// snapshots, so the algorithm is pinned (`tests::id_hash_is_pinned`) and never changes.
#[inline]
pub(crate) fn id_hash(s: &str) -> u32 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let b = s.as_bytes();
    let mut h = (b.len() as u64).wrapping_mul(K);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut t = [0u8; 8];
        t[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(t)).wrapping_mul(K).rotate_left(29);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h ^ (h >> 32)) as u32
}

/// Inline capacity of [`Distinct`] before it spills to the heap.
const DISTINCT_INLINE: usize = 4;
/// Up to this many distinct values are counted exactly; beyond, a HyperLogLog estimates.
pub(crate) const DISTINCT_EXACT_MAX: usize = 256;
/// HyperLogLog precision: 2^10 registers, standard error 1.04/√1024 ≈ 3.3 %.
const HLL_BITS: u32 = 10;
const HLL_REGISTERS: usize = 1 << HLL_BITS;

/// Distinct count of identifiers within one bucket (32-bit hashes): exact — inline for up to 4
/// values (24 bytes, the common case of a service with a few instances), then a sorted vector
/// up to [`DISTINCT_EXACT_MAX`] — then a HyperLogLog sketch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Distinct {
    Inline {
        len: u8,
        hashes: [u32; DISTINCT_INLINE],
    },
    Spilled(Box<Spill>),
}

/// Storage of a [`Distinct`] past its inline capacity (always behind its `Box`).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // only ever allocated boxed, once per large bucket
pub(crate) enum Spill {
    Exact(Vec<u32>),
    Sketch([u8; HLL_REGISTERS]),
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::Inline {
            len: 0,
            hashes: [0; DISTINCT_INLINE],
        }
    }
}

impl Distinct {
    #[inline]
    pub fn insert(&mut self, h: u32) {
        match self {
            Distinct::Inline { len, hashes } => {
                let n = usize::from(*len);
                if hashes[..n].contains(&h) {
                    return;
                }
                if n < DISTINCT_INLINE {
                    hashes[n] = h;
                    *len += 1;
                } else {
                    let mut v = Vec::with_capacity(2 * DISTINCT_INLINE + 2);
                    v.extend_from_slice(&hashes[..]);
                    v.push(h);
                    v.sort_unstable();
                    *self = Distinct::Spilled(Box::new(Spill::Exact(v)));
                }
            }
            Distinct::Spilled(spill) => match &mut **spill {
                Spill::Exact(v) => {
                    if let Err(pos) = v.binary_search(&h) {
                        if v.len() < DISTINCT_EXACT_MAX {
                            v.insert(pos, h);
                        } else {
                            let mut regs = [0u8; HLL_REGISTERS];
                            for &x in v.iter() {
                                hll_add(&mut regs, x);
                            }
                            hll_add(&mut regs, h);
                            **spill = Spill::Sketch(regs);
                        }
                    }
                }
                Spill::Sketch(regs) => hll_add(regs, h),
            },
        }
    }

    /// The number of distinct values (exact up to [`DISTINCT_EXACT_MAX`], then estimated).
    pub fn count(&self) -> f64 {
        match self {
            Distinct::Inline { len, .. } => f64::from(*len),
            Distinct::Spilled(s) => match &**s {
                Spill::Exact(v) => v.len() as f64,
                Spill::Sketch(regs) => hll_estimate(regs),
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Distinct::Inline { len: 0, .. })
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            Distinct::Inline { .. } => 0,
            Distinct::Spilled(s) => {
                std::mem::size_of::<Spill>()
                    + match &**s {
                        Spill::Exact(v) => v.capacity() * 4,
                        Spill::Sketch(_) => 0,
                    }
            }
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Distinct::Inline { len, hashes } => {
                out.push(0);
                out.push(*len);
                for h in &hashes[..usize::from(*len)] {
                    out.extend_from_slice(&h.to_le_bytes());
                }
            }
            Distinct::Spilled(s) => match &**s {
                Spill::Exact(v) => {
                    out.push(1);
                    out.extend_from_slice(&(v.len() as u16).to_le_bytes());
                    for h in v {
                        out.extend_from_slice(&h.to_le_bytes());
                    }
                }
                Spill::Sketch(regs) => {
                    out.push(2);
                    out.extend_from_slice(&regs[..]);
                }
            },
        }
    }

    pub(crate) fn decode(
        r: &mut crate::features::state::Reader<'_>,
    ) -> Result<Distinct, crate::features::FeatureError> {
        match r.u8()? {
            0 => {
                let len = r.u8()?;
                if usize::from(len) > DISTINCT_INLINE {
                    return Err(r.corrupt("inline distinct set too long"));
                }
                let mut hashes = [0; DISTINCT_INLINE];
                for h in hashes.iter_mut().take(usize::from(len)) {
                    *h = r.u32()?;
                }
                Ok(Distinct::Inline { len, hashes })
            }
            1 => {
                let n = usize::from(r.u16()?);
                if !(DISTINCT_INLINE < n && n <= DISTINCT_EXACT_MAX) {
                    return Err(r.corrupt("exact distinct set of impossible size"));
                }
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(r.u32()?);
                }
                if v.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(r.corrupt("exact distinct set not sorted"));
                }
                Ok(Distinct::Spilled(Box::new(Spill::Exact(v))))
            }
            2 => {
                let mut regs = [0u8; HLL_REGISTERS];
                regs.copy_from_slice(r.bytes(HLL_REGISTERS)?);
                Ok(Distinct::Spilled(Box::new(Spill::Sketch(regs))))
            }
            _ => Err(r.corrupt("unknown distinct-set kind")),
        }
    }
}

#[inline]
fn hll_add(regs: &mut [u8; HLL_REGISTERS], h: u32) {
    // Remix so that ids hashed close together spread over registers.
    let h = h.wrapping_mul(0x9E37_79B1).rotate_left(13) ^ h;
    let idx = (h >> (32 - HLL_BITS)) as usize;
    let rest = (h << HLL_BITS) | (1 << (HLL_BITS - 1));
    let rank = rest.leading_zeros() as u8 + 1;
    if regs[idx] < rank {
        regs[idx] = rank;
    }
}

fn hll_estimate(regs: &[u8; HLL_REGISTERS]) -> f64 {
    let m = HLL_REGISTERS as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let mut sum = 0.0;
    let mut zeros = 0usize;
    for &r in regs.iter() {
        sum += (-f64::from(r)).exp2();
        zeros += usize::from(r == 0);
    }
    let raw = alpha * m * m / sum;
    if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln() // linear counting for small cardinalities
    } else {
        raw
    }
}

/// One service's bucket while it is still open: O(1) updates per sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OpenBucket {
    // Owned by the service's `ServiceState` (sample path); every field is a running aggregate
    // updated by `push` and read once, by `fields`/`extras`, when the bucket closes.
    /// Bucket index: `floor(ts_ms / width_ms)`; [`NO_BUCKET`] for an empty slot.
    pub idx: i64,
    /// Σ `requests` of the samples that carried one.
    pub requests: f64,
    /// Σ `response_time_ms`.
    pub rt_sum: f64,
    /// Σ `errors`.
    pub errors: f64,
    /// Running statistics of `cpu`.
    pub cpu: Moments,
    /// Running statistics of `memory`.
    pub memory: Moments,
    /// Samples folded in.
    pub samples: u32,
    /// Lifecycle `add` events.
    pub add: u32,
    /// Lifecycle `remove` events.
    pub remove: u32,
    /// Lifecycle `update` events.
    pub update: u32,
    /// Samples that carried `response_time_ms`.
    pub rt_n: u32,
    /// Largest `response_time_ms`.
    pub rt_max: f32,
    /// Whether any sample carried `requests`.
    pub has_requests: bool,
    /// Worst status code seen (0 healthy, 1 degraded, 2 down), −1 for none.
    pub worst_status: i8,
    /// Distinct `instance_id`s.
    pub machines: Distinct,
    /// Distinct `host`s.
    pub hosts: Distinct,
    /// Distinct `platform`s.
    pub platforms: Distinct,
}

/// Index of an empty [`OpenBucket`] slot.
pub(crate) const NO_BUCKET: i64 = i64::MIN;

impl Default for OpenBucket {
    fn default() -> Self {
        OpenBucket::new(NO_BUCKET)
    }
}

impl OpenBucket {
    pub fn new(idx: i64) -> OpenBucket {
        OpenBucket {
            idx,
            requests: 0.0,
            rt_sum: 0.0,
            errors: 0.0,
            cpu: Moments::default(),
            memory: Moments::default(),
            samples: 0,
            add: 0,
            remove: 0,
            update: 0,
            rt_n: 0,
            rt_max: 0.0,
            has_requests: false,
            worst_status: -1,
            machines: Distinct::default(),
            hosts: Distinct::default(),
            platforms: Distinct::default(),
        }
    }

    /// Folds one sample in. Non-finite measurements are ignored (as if absent).
    #[inline]
    pub fn push(&mut self, s: &Sample) {
        self.samples += 1;
        if let Some(r) = s.requests.filter(|v| v.is_finite()) {
            self.has_requests = true;
            self.requests += r;
        }
        if let Some(e) = s.event {
            match e {
                crate::sample::Lifecycle::Add => self.add += 1,
                crate::sample::Lifecycle::Remove => self.remove += 1,
                crate::sample::Lifecycle::Update => self.update += 1,
            }
        }
        if let Some(c) = s.cpu.filter(|v| v.is_finite()) {
            self.cpu.push(c);
        }
        if let Some(m) = s.memory.filter(|v| v.is_finite()) {
            self.memory.push(m);
        }
        if let Some(rt) = s.response_time_ms.filter(|v| v.is_finite()) {
            self.rt_n += 1;
            self.rt_sum += rt;
            self.rt_max = if self.rt_n == 1 {
                rt as f32
            } else {
                self.rt_max.max(rt as f32)
            };
        }
        if let Some(e) = s.errors.filter(|v| v.is_finite()) {
            self.errors += e;
        }
        if let Some(st) = s.status {
            self.worst_status = self.worst_status.max(st.code() as i8);
        }
        if let Some(id) = &s.instance_id {
            self.machines.insert(id_hash(id));
        }
        if let Some(h) = &s.host {
            self.hosts.insert(id_hash(h));
        }
        if let Some(p) = &s.platform {
            self.platforms.insert(id_hash(p));
        }
    }

    /// The bucket's 15 raw fields, `None` where the bucket has no data (to be forward-filled).
    ///
    /// - `total_events`: Σ `requests`, or the sample count when no sample carried `requests`.
    /// - `unique_machines`: distinct `instance_id`; 1 when samples came without one (a service
    ///   that reported has at least one instance).
    /// - `add/remove/update_events`: lifecycle `event` counts (0 when none).
    /// - `avg/std/min/max_cpu|memory`: mean, sample std (ddof 1; 0 for one value), min, max of
    ///   the values present; `None` when no sample carried the metric.
    /// - `unique_switches` / `unique_platforms`: distinct `host` / `platform`; `None` when absent.
    pub fn fields(&self) -> [Option<f64>; 15] {
        let mut f = [None; 15];
        if self.samples == 0 {
            return f;
        }
        f[0] = Some(if self.has_requests {
            self.requests
        } else {
            f64::from(self.samples)
        });
        f[1 + A_MACHINES] = Some(self.machines.count().max(1.0));
        f[1 + A_ADD] = Some(f64::from(self.add));
        f[1 + A_REMOVE] = Some(f64::from(self.remove));
        f[1 + A_UPDATE] = Some(f64::from(self.update));
        if self.cpu.n > 0 {
            f[1 + A_AVG_CPU] = Some(self.cpu.mean);
            f[1 + A_STD_CPU] = Some(self.cpu.std());
            f[1 + A_MIN_CPU] = Some(f64::from(self.cpu.min));
            f[1 + A_MAX_CPU] = Some(f64::from(self.cpu.max));
        }
        if self.memory.n > 0 {
            f[1 + A_AVG_MEMORY] = Some(self.memory.mean);
            f[1 + A_STD_MEMORY] = Some(self.memory.std());
            f[1 + A_MIN_MEMORY] = Some(f64::from(self.memory.min));
            f[1 + A_MAX_MEMORY] = Some(f64::from(self.memory.max));
        }
        if !self.hosts.is_empty() {
            f[1 + A_SWITCHES] = Some(self.hosts.count());
        }
        if !self.platforms.is_empty() {
            f[1 + A_PLATFORMS] = Some(self.platforms.count());
        }
        f
    }

    pub fn extras(&self) -> BucketExtras {
        BucketExtras {
            samples: self.samples,
            avg_response_ms: (self.rt_n > 0).then(|| self.rt_sum / f64::from(self.rt_n)),
            max_response_ms: (self.rt_n > 0).then_some(f64::from(self.rt_max)),
            errors: self.errors,
            worst_status: match self.worst_status {
                0 => Some(Status::Healthy),
                1 => Some(Status::Degraded),
                2 => Some(Status::Down),
                _ => None,
            },
            has_cpu: self.cpu.n > 0,
            has_memory: self.memory.n > 0,
            has_requests: self.has_requests,
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.machines.heap_bytes() + self.hosts.heap_bytes() + self.platforms.heap_bytes()
    }

    /// Empties the slot in place (no 200-byte move), releasing any spilled distinct sets.
    pub fn reset(&mut self) {
        self.idx = NO_BUCKET;
        self.requests = 0.0;
        self.rt_sum = 0.0;
        self.errors = 0.0;
        self.cpu = Moments::default();
        self.memory = Moments::default();
        self.samples = 0;
        self.add = 0;
        self.remove = 0;
        self.update = 0;
        self.rt_n = 0;
        self.rt_max = 0.0;
        self.has_requests = false;
        self.worst_status = -1;
        for d in [&mut self.machines, &mut self.hosts, &mut self.platforms] {
            match d {
                Distinct::Inline { len, .. } => *len = 0,
                Distinct::Spilled(_) => *d = Distinct::default(),
            }
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let w = |out: &mut Vec<u8>, b: &[u8]| out.extend_from_slice(b);
        w(out, &self.idx.to_le_bytes());
        for v in [self.samples, self.add, self.remove, self.update, self.rt_n] {
            w(out, &v.to_le_bytes());
        }
        for v in [self.requests, self.rt_sum, self.errors] {
            w(out, &v.to_le_bytes());
        }
        w(out, &self.rt_max.to_le_bytes());
        for m in [&self.cpu, &self.memory] {
            w(out, &m.n.to_le_bytes());
            w(out, &m.mean.to_le_bytes());
            w(out, &m.m2.to_le_bytes());
            w(out, &m.min.to_le_bytes());
            w(out, &m.max.to_le_bytes());
        }
        out.push(u8::from(self.has_requests));
        out.push(self.worst_status as u8);
        self.machines.encode(out);
        self.hosts.encode(out);
        self.platforms.encode(out);
    }

    pub(crate) fn decode(
        r: &mut crate::features::state::Reader<'_>,
    ) -> Result<OpenBucket, crate::features::FeatureError> {
        let mut b = OpenBucket::new(r.i64()?);
        b.samples = r.u32()?;
        b.add = r.u32()?;
        b.remove = r.u32()?;
        b.update = r.u32()?;
        b.rt_n = r.u32()?;
        b.requests = r.f64()?;
        b.rt_sum = r.f64()?;
        b.errors = r.f64()?;
        b.rt_max = r.f32()?;
        for m in [&mut b.cpu, &mut b.memory] {
            m.n = r.u32()?;
            m.mean = r.f64()?;
            m.m2 = r.f64()?;
            m.min = r.f32()?;
            m.max = r.f32()?;
        }
        b.has_requests = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(r.corrupt("bad flag")),
        };
        b.worst_status = r.u8()? as i8;
        if !(-1..=2).contains(&b.worst_status) {
            return Err(r.corrupt("status code out of range"));
        }
        b.machines = Distinct::decode(r)?;
        b.hosts = Distinct::decode(r)?;
        b.platforms = Distinct::decode(r)?;
        Ok(b)
    }
}
