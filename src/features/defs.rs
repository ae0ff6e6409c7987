//! The definitions of the 82 features: pure functions shared by the incremental engine
//! ([`state`](super::state)), the from-scratch [`reference`](super::reference) and the gather of
//! past rows. How each window statistic is *maintained* (running sums, deques, …) lives in
//! `state.rs`; *what* it is lives here and in [`feature_table`].
//!
//! Conventions (reverse-engineered from the seed CSV, see `check.rs`):
//! - windows are counted in buckets and include the current bucket; `lagK` is K buckets back;
//! - before a window is full it uses what exists (pandas `min_periods=1`); a lag reaching before
//!   the first bucket takes the first bucket's value (what the seed's back-fill produced, and
//!   causal: the first bucket is in the past);
//! - `std` is the sample standard deviation (ddof 1), 0 for a single value.

use super::bucket::{
    RawRow, A_ADD, A_AVG_CPU, A_AVG_MEMORY, A_MACHINES, A_MAX_CPU, A_MAX_MEMORY, A_MIN_CPU,
    A_MIN_MEMORY, A_PLATFORMS, A_REMOVE, A_STD_CPU, A_STD_MEMORY, A_SWITCHES, A_UPDATE,
};
use super::names::*;
use super::FeatureVector;
use std::f64::consts::PI;

/// Lag distances, in buckets, for `lagK_events|machines|cpu`.
pub const LAGS: [usize; 6] = [1, 2, 3, 6, 12, 24];
/// Moving-average windows, in buckets, for `maK_events|machines|cpu`.
pub const MAS: [usize; 5] = [3, 6, 12, 24, 48];
/// Rolling std/max/min windows of `total_events`.
pub const ROLLS: [usize; 2] = [12, 24];
/// The longest window any feature reads (ma48).
pub const MAX_WINDOW: usize = 48;

/// Guard added to denominators, as in the seed (`x / (y + 1e-6)`).
const EPS: f64 = 1e-6;

/// Calendar position of a bucket's start, in local time (UTC + offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeParts {
    /// 0..=23.
    pub hour: u8,
    /// 0 = Sunday … 6 = Saturday.
    pub dow: u8,
    /// Day of the month, 0-based (0..=30).
    pub dom: u8,
}

impl TimeParts {
    /// Calendar parts of the instant `start_ms` (epoch ms, UTC) shifted by `utc_offset_secs`.
    pub fn at(start_ms: i64, utc_offset_secs: i32) -> TimeParts {
        let secs = start_ms.div_euclid(1000) + i64::from(utc_offset_secs);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        TimeParts {
            hour: (sod / 3600) as u8,
            // 1970-01-01 was a Thursday (4 with Sunday = 0).
            dow: (days + 4).rem_euclid(7) as u8,
            dom: (civil_day_of_month(days) - 1) as u8,
        }
    }
}

/// Day of the month (1..=31) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_day_of_month(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    doy - (153 * mp + 2) / 5 + 1
}

/// Labels of the quantile family for one bucket (see [`labels_from_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Labels {
    /// `events_quantile`, 0..=9.
    pub events_q: u8,
    /// `cpu_quantile`, 0..=4.
    pub cpu_q: u8,
    /// `memory_quantile`, 0..=4.
    pub memory_q: u8,
    /// `is_high_load`.
    pub high: bool,
    /// `is_low_load`.
    pub low: bool,
    /// `load_category`, 1..=5.
    pub load_cat: u8,
}

/// Rank of the current bucket's value in its window: `lt` values strictly below it, `le` values
/// at most it, out of `n` (the window includes the current bucket, so `lt < le`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rank {
    /// Window values strictly below the current value.
    pub lt: usize,
    /// Window values at most the current value.
    pub le: usize,
    /// Window length.
    pub n: usize,
}

/// `pd.qcut(window, q, labels=False)` evaluated at the current value: the number of cut points
/// `T_j = quantile(j/q)` (linear interpolation, j = 1..q-1) strictly below the value. Because the
/// value is itself in the window, `x > T_j` ⟺ `lt > floor((n-1)·j/q)`, exactly, from counts.
#[inline]
pub fn qcut_label(r: Rank, q: usize) -> u8 {
    (1..q).filter(|j| r.lt > (r.n - 1) * j / q).count() as u8
}

/// `x > quantile(0.8)` (linear interpolation), from counts (see [`qcut_label`]).
#[inline]
pub fn is_high(r: Rank) -> bool {
    r.lt > (r.n - 1) * 4 / 5
}

/// `x < quantile(0.2)` (linear interpolation), from counts: with `h = (n-1)/5 = f + frac`,
/// `x < T` iff fewer than `f+1` values are ≤ x, or x is the f-th order statistic, the next one is
/// larger and `frac > 0`.
#[inline]
pub fn is_low(r: Rank) -> bool {
    let f = (r.n - 1) / 5;
    let frac = (r.n - 1) % 5 != 0;
    r.le <= f || (frac && r.lt <= f && r.le == f + 1)
}

/// `pd.cut(window, 5, labels=[1..5])` at the current value: five equal-width bins between the
/// window's min and max (`lo + i·(hi-lo)/5`, right-closed); 3 (the middle) when `hi == lo`,
/// as pandas does for a constant range.
#[inline]
pub fn load_category(x: f64, lo: f64, hi: f64) -> u8 {
    if hi > lo {
        let step = (hi - lo) / 5.0;
        1 + (1..5).filter(|i| x > f64::from(*i) * step + lo).count() as u8
    } else {
        3
    }
}

/// Labels from the three ranks and the event window's range.
#[inline]
pub fn labels_from_counts(
    ev: Rank,
    cpu: Rank,
    mem: Rank,
    ev_x: f64,
    ev_lo: f64,
    ev_hi: f64,
) -> Labels {
    Labels {
        events_q: qcut_label(ev, 10),
        cpu_q: qcut_label(cpu, 5),
        memory_q: qcut_label(mem, 5),
        high: is_high(ev),
        low: is_low(ev),
        load_cat: load_category(ev_x, ev_lo, ev_hi),
    }
}

/// Order-preserving 16-bit code of `total_events` for the rank window: `round(log2(1+x)·2048)`
/// (0.034 % steps; ≤ 0 → 0; saturates at ≈ 4.3·10⁹ events per bucket).
#[inline]
pub fn code_events(x: f64) -> u16 {
    if x > 0.0 {
        let c = ((x + 1.0).log2() * 2048.0).round();
        if c >= 65535.0 {
            u16::MAX
        } else {
            c as u16
        }
    } else {
        0
    }
}

/// The value an events code stands for, `2^(c/2048) − 1` (inverse of [`code_events`] up to
/// rounding): `2^(c>>11)` exactly times a 2048-entry table of `2^(f/2048)`.
#[inline]
pub fn decode_events(c: u16) -> f64 {
    static FRAC: std::sync::OnceLock<Box<[f64; 2048]>> = std::sync::OnceLock::new();
    let frac = FRAC.get_or_init(|| {
        let mut t = Box::new([0.0; 2048]);
        for (f, v) in t.iter_mut().enumerate() {
            *v = (f as f64 / 2048.0).exp2();
        }
        t
    });
    frac[usize::from(c & 2047)] * f64::from(1u32 << (c >> 11)) - 1.0
}

/// Order-preserving 16-bit code of a 0..1 fraction (cpu, memory): `round(x·65535)`, clamped.
#[inline]
pub fn code_unit(x: f32) -> u16 {
    if x > 0.0 {
        if x >= 1.0 {
            u16::MAX
        } else {
            (f64::from(x) * 65535.0).round() as u16
        }
    } else {
        0
    }
}

/// Window statistics of one bucket, however they were obtained (incrementally or directly).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Parts {
    /// The bucket's canonical raw row.
    pub row: RawRow,
    /// Calendar parts of the bucket start.
    pub time: TimeParts,
    /// Quantile-family labels.
    pub labels: Labels,
    /// `lags[i][s]`: series s (0 events, 1 machines, 2 cpu) at distance `LAGS[i]`.
    pub lags: [[f64; 3]; 6],
    /// `mas[i][s]`: mean of series s over the last `MAS[i]` buckets.
    pub mas: [[f64; 3]; 5],
    /// `rolls[i] = [std, max, min]` of `total_events` over the last `ROLLS[i]` buckets.
    pub rolls: [[f64; 3]; 2],
}

/// `(x - lag) / lag`, pandas' `pct_change`; 0 when the lagged value is 0 (no relative change is
/// defined; the seed data never hit this).
fn pct_change(x: f64, lag: f64) -> f64 {
    if lag == 0.0 {
        0.0
    } else {
        x / lag - 1.0
    }
}

/// Vector positions of `lag{1,2,3,6,12,24}_{events,machines,cpu}`, by [`LAGS`] then series.
const LAG_COLUMNS: [[usize; 3]; 6] = [
    [F_LAG1_EVENTS, F_LAG1_MACHINES, F_LAG1_CPU],
    [F_LAG2_EVENTS, F_LAG2_MACHINES, F_LAG2_CPU],
    [F_LAG3_EVENTS, F_LAG3_MACHINES, F_LAG3_CPU],
    [F_LAG6_EVENTS, F_LAG6_MACHINES, F_LAG6_CPU],
    [F_LAG12_EVENTS, F_LAG12_MACHINES, F_LAG12_CPU],
    [F_LAG24_EVENTS, F_LAG24_MACHINES, F_LAG24_CPU],
];

/// Vector positions of `ma{3,6,12,24,48}_{events,machines,cpu}`, by [`MAS`] then series.
const MA_COLUMNS: [[usize; 3]; 5] = [
    [F_MA3_EVENTS, F_MA3_MACHINES, F_MA3_CPU],
    [F_MA6_EVENTS, F_MA6_MACHINES, F_MA6_CPU],
    [F_MA12_EVENTS, F_MA12_MACHINES, F_MA12_CPU],
    [F_MA24_EVENTS, F_MA24_MACHINES, F_MA24_CPU],
    [F_MA48_EVENTS, F_MA48_MACHINES, F_MA48_CPU],
];

/// `sin/cos(2π·hour/24)` and `sin/cos(2π·dow/7)`, evaluated once with the seed's expression.
struct Trig {
    hour_sin: [f64; 24],
    hour_cos: [f64; 24],
    day_sin: [f64; 7],
    day_cos: [f64; 7],
}

fn trig_table() -> &'static Trig {
    static TABLE: std::sync::OnceLock<Trig> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| Trig {
        hour_sin: std::array::from_fn(|h| (2.0 * PI * h as f64 / 24.0).sin()),
        hour_cos: std::array::from_fn(|h| (2.0 * PI * h as f64 / 24.0).cos()),
        day_sin: std::array::from_fn(|d| (2.0 * PI * d as f64 / 7.0).sin()),
        day_cos: std::array::from_fn(|d| (2.0 * PI * d as f64 / 7.0).cos()),
    })
}

/// Assembles the 82-vector. Every feature's definition is the line that sets it.
pub fn assemble(p: &Parts) -> FeatureVector {
    let mut v = [0.0; N_FEATURES];
    let r = &p.row;
    let events = r.total_events;
    let machines = r.agg(A_MACHINES);
    let cpu = r.agg(A_AVG_CPU);
    let memory = r.agg(A_AVG_MEMORY);
    // Raw bucket aggregates (bucket.rs).
    v[F_UNIQUE_MACHINES] = machines;
    v[F_ADD_EVENTS] = r.agg(A_ADD);
    v[F_REMOVE_EVENTS] = r.agg(A_REMOVE);
    v[F_UPDATE_EVENTS] = r.agg(A_UPDATE);
    v[F_AVG_CPU] = cpu;
    v[F_AVG_MEMORY] = memory;
    v[F_STD_CPU] = r.agg(A_STD_CPU);
    v[F_STD_MEMORY] = r.agg(A_STD_MEMORY);
    v[F_MIN_CPU] = r.agg(A_MIN_CPU);
    v[F_MAX_CPU] = r.agg(A_MAX_CPU);
    v[F_MIN_MEMORY] = r.agg(A_MIN_MEMORY);
    v[F_MAX_MEMORY] = r.agg(A_MAX_MEMORY);
    v[F_UNIQUE_SWITCHES] = r.agg(A_SWITCHES);
    v[F_UNIQUE_PLATFORMS] = r.agg(A_PLATFORMS);
    // Calendar of the bucket start, local time.
    let hour = f64::from(p.time.hour);
    let dow = f64::from(p.time.dow);
    v[F_HOUR_OF_DAY] = hour;
    v[F_DAY_OF_WEEK] = dow; // 0 = Sunday
    v[F_DAY_OF_MONTH] = f64::from(p.time.dom); // 0-based
    let trig = trig_table();
    v[F_HOUR_SIN] = trig.hour_sin[usize::from(p.time.hour) % 24]; // sin(2π·hour/24)
    v[F_HOUR_COS] = trig.hour_cos[usize::from(p.time.hour) % 24]; // cos(2π·hour/24)
    v[F_DAY_SIN] = trig.day_sin[usize::from(p.time.dow) % 7]; // sin(2π·dow/7)
    v[F_DAY_COS] = trig.day_cos[usize::from(p.time.dow) % 7]; // cos(2π·dow/7)
                                                              // lagK_{events,machines,cpu}: the value K buckets back (first bucket's value before that).
    for (cols, lag) in LAG_COLUMNS.iter().zip(&p.lags) {
        for (c, x) in cols.iter().zip(lag) {
            v[*c] = *x;
        }
    }
    // maK_{events,machines,cpu}: mean over the last K buckets (fewer at the start).
    for (cols, ma) in MA_COLUMNS.iter().zip(&p.mas) {
        for (c, x) in cols.iter().zip(ma) {
            v[*c] = *x;
        }
    }
    // rollK_{std,max,min}: of total_events over the last K buckets (std ddof 1, 0 for one value).
    v[F_ROLL12_STD] = p.rolls[0][0];
    v[F_ROLL12_MAX] = p.rolls[0][1];
    v[F_ROLL12_MIN] = p.rolls[0][2];
    v[F_ROLL24_STD] = p.rolls[1][0];
    v[F_ROLL24_MAX] = p.rolls[1][1];
    v[F_ROLL24_MIN] = p.rolls[1][2];
    // Changes of total_events against 1, 6, 24 buckets back ("1h/6h/24h" at hourly buckets).
    let (lag1, lag6, lag24) = (p.lags[0][0], p.lags[3][0], p.lags[5][0]);
    v[F_PCT_CHANGE_1H] = pct_change(events, lag1);
    v[F_PCT_CHANGE_6H] = pct_change(events, lag6);
    v[F_PCT_CHANGE_24H] = pct_change(events, lag24);
    v[F_DIFF_1H] = events - lag1;
    v[F_DIFF_6H] = events - lag6;
    v[F_DIFF_24H] = events - lag24;
    // Ratios of the current bucket (seed formulas, including their 1e-6 guards).
    v[F_CPU_MEMORY_RATIO] = cpu / (memory + EPS);
    v[F_RESOURCE_TOTAL] = cpu + memory;
    v[F_RESOURCE_EFFICIENCY] = events / (cpu + memory + EPS);
    v[F_EVENTS_PER_MACHINE] = events / (machines + EPS);
    // Quantile family: rank of the current bucket in the trailing `history_buckets` window.
    v[F_EVENTS_QUANTILE] = f64::from(p.labels.events_q);
    v[F_CPU_QUANTILE] = f64::from(p.labels.cpu_q);
    v[F_MEMORY_QUANTILE] = f64::from(p.labels.memory_q);
    v[F_IS_HIGH_LOAD] = f64::from(u8::from(p.labels.high));
    v[F_IS_LOW_LOAD] = f64::from(u8::from(p.labels.low));
    v[F_LOAD_CATEGORY] = f64::from(p.labels.load_cat);
    // Calendar flags.
    v[F_IS_BUSINESS_HOUR] = f64::from(u8::from((9..=18).contains(&p.time.hour)));
    v[F_IS_WEEKEND] = f64::from(u8::from(p.time.dow == 0 || p.time.dow == 6));
    v[F_IS_NIGHT] = f64::from(u8::from(p.time.hour >= 22 || p.time.hour <= 6));
    // Interactions.
    v[F_CPU_EVENTS_INTERACTION] = cpu * events / 1000.0;
    v[F_MACHINES_EVENTS_RATIO] = machines / (events + 1.0);
    v[F_SWITCHES_COMPLEXITY] = r.agg(A_SWITCHES) * r.agg(A_PLATFORMS);
    v
}

/// How a feature relates to the seed, for the README's feature table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedRelation {
    /// Same definition, causal in the seed too: reproduced on every seed row.
    Same,
    /// Same definition; only the seed's first rows were back-filled from later rows (future),
    /// where mcpwatch uses what exists. Reproduced on all other rows.
    SameAfterWarmup,
    /// The seed's definition ranks against the whole 30-day file (future data); mcpwatch ranks
    /// against the trailing window, so the values differ.
    CausalReplacement,
}

/// One row of the feature table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureDoc {
    /// Feature name.
    pub name: &'static str,
    /// mcpwatch's definition, in one line.
    pub definition: &'static str,
    /// Whether mcpwatch's definition reads only the current and past buckets (always true).
    pub causal: bool,
    /// How the seed's column relates to it.
    pub seed: SeedRelation,
}

/// The definition of every feature, in model order (the README's feature table).
pub fn feature_table() -> Vec<FeatureDoc> {
    use SeedRelation::*;
    FEATURE_NAMES
        .iter()
        .map(|&name| {
            let (definition, seed): (&'static str, SeedRelation) = match name {
                "unique_machines" => ("distinct `instance_id` in the bucket (1 when samples carry none)", Same),
                "add_events" | "remove_events" | "update_events" => ("count of lifecycle `event` add / remove / update", Same),
                "avg_cpu" | "avg_memory" => ("mean of `cpu` / `memory` (0..1) over the bucket's samples", Same),
                "std_cpu" | "std_memory" => ("sample std (ddof 1; 0 for one value) of `cpu` / `memory`", Same),
                "min_cpu" | "max_cpu" | "min_memory" | "max_memory" => ("min / max of `cpu` / `memory`", Same),
                "unique_switches" => ("distinct `host`", Same),
                "unique_platforms" => ("distinct `platform`", Same),
                "hour_of_day" => ("hour of the bucket start, local time (utc_offset_secs)", Same),
                "day_of_week" => ("weekday of the bucket start, 0 = Sunday", Same),
                "day_of_month" => ("day of the month of the bucket start, 0-based", Same),
                "hour_sin" | "hour_cos" => ("sin / cos(2π·hour_of_day/24)", Same),
                "day_sin" | "day_cos" => ("sin / cos(2π·day_of_week/7)", Same),
                n if n.starts_with("lag") => ("value K buckets back of total_events / unique_machines / avg_cpu; the first bucket's value while fewer than K exist", Same),
                n if n.starts_with("ma") && !n.starts_with("machines") => ("mean over the last K buckets incl. the current (fewer at the start)", Same),
                "roll12_std" | "roll24_std" => ("sample std (ddof 1) of total_events over the last K buckets; 0 for one bucket (seed back-filled row 0 from row 1)", SameAfterWarmup),
                n if n.starts_with("roll") => ("max / min of total_events over the last K buckets", Same),
                "pct_change_1h" | "pct_change_6h" | "pct_change_24h" => ("total_events / lagK_events − 1 (K = 1, 6, 24 buckets; 0 if the lag is 0); seed back-filled its first K rows from row K", SameAfterWarmup),
                "diff_1h" | "diff_6h" | "diff_24h" => ("total_events − lagK_events (K = 1, 6, 24); seed back-filled its first K rows from row K", SameAfterWarmup),
                "cpu_memory_ratio" => ("avg_cpu / (avg_memory + 1e-6)", Same),
                "resource_total" => ("avg_cpu + avg_memory", Same),
                "resource_efficiency" => ("total_events / (avg_cpu + avg_memory + 1e-6)", Same),
                "events_per_machine" => ("total_events / (unique_machines + 1e-6)", Same),
                "events_quantile" => ("decile 0..9 of total_events in the trailing history_buckets window (pd.qcut semantics); seed: over the whole file", CausalReplacement),
                "cpu_quantile" | "memory_quantile" => ("quintile 0..4 of avg_cpu / avg_memory in the trailing window; seed: over the whole file", CausalReplacement),
                "is_high_load" => ("total_events > 80th percentile of the trailing window; seed: of the whole file", CausalReplacement),
                "is_low_load" => ("total_events < 20th percentile of the trailing window; seed: of the whole file", CausalReplacement),
                "load_category" => ("1..5: equal-width fifth of [min, max] of total_events in the trailing window (pd.cut); seed: of the whole file", CausalReplacement),
                "is_business_hour" => ("9 ≤ hour_of_day ≤ 18 (every day)", Same),
                "is_weekend" => ("day_of_week ∈ {0 Sunday, 6 Saturday}", Same),
                "is_night" => ("hour_of_day ≥ 22 or ≤ 6", Same),
                "cpu_events_interaction" => ("avg_cpu · total_events / 1000", Same),
                "machines_events_ratio" => ("unique_machines / (total_events + 1)", Same),
                "switches_complexity" => ("unique_switches · unique_platforms", Same),
                _ => ("", Same),
            };
            FeatureDoc { name, definition, causal: true, seed }
        })
        .collect()
}
