//! Tests of the feature stage: one group per feature family, the property tests holding the
//! incremental engine to the from-scratch recomputation, snapshots, eviction and the seed CSV.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use super::bucket::{
    canon_cpu, canon_events, canon_machines, id_hash, Distinct, OpenBucket, RawRow,
};
use super::defs::{self, Rank, TimeParts};
use super::names::*;
use super::*;
use crate::sample::{Lifecycle, Origin, Sample, Status};

/// The seed CSV: `$MCPWATCH_SEED_CSV`, else `../shared/data/cluster/…` beside the repository
/// (where CI puts it). Tests that need it say so and pass when it is absent.
fn seed_csv() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("MCPWATCH_SEED_CSV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/data/cluster/lstm_ready_cluster_data.csv")
        });
    if p.exists() {
        Some(p)
    } else {
        eprintln!("seed CSV not found at {}: skipping", p.display());
        None
    }
}

/// `|a-b| <= tol · max(1, |a|, |b|)`: relative for values ≥ 1, absolute below.
fn close(a: f64, b: f64, tol: f64) -> bool {
    a == b || (a - b).abs() <= tol * 1f64.max(a.abs()).max(b.abs())
}

fn assert_vec_close(ours: &FeatureVector, reference: &FeatureVector, tol: f64, ctx: &str) {
    for i in 0..N_FEATURES {
        assert!(
            close(ours[i], reference[i], tol),
            "{ctx}: feature {} ({}) incremental {} vs reference {}",
            i,
            FEATURE_NAMES[i],
            ours[i],
            reference[i]
        );
    }
}

fn test_config(width: u64, lateness: u64, history: usize, utc: i32) -> FeaturesConfig {
    FeaturesConfig {
        bucket_width_secs: width,
        lateness_secs: lateness,
        history_buckets: history,
        idle_evict_secs: 1_000_000,
        utc_offset_secs: utc,
        // Tests drive a manual clock that stays at 0 while event time is years later.
        max_future_secs: 1 << 40,
    }
}

fn engine(cfg: FeaturesConfig) -> (FeatureEngine, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(0));
    (
        FeatureEngine::new(cfg, clock.clone()).expect("valid config"),
        clock,
    )
}

fn row(events: f64, machines: f64, cpu: f64, memory: f64) -> RawRow {
    let mut a = [0.0; 14];
    a[0] = machines;
    a[4] = cpu;
    a[5] = memory;
    a[12] = 2.0;
    a[13] = 3.0;
    RawRow::from_values(events, &a, None)
}

// ----- names ---------------------------------------------------------------------------

#[test]
fn names_are_82_unique_and_indices_match() {
    assert_eq!(FEATURE_NAMES.len(), 82);
    let set: HashSet<_> = FEATURE_NAMES.iter().collect();
    assert_eq!(set.len(), 82);
    let pairs = [
        (F_UNIQUE_MACHINES, "unique_machines"),
        (F_UNIQUE_PLATFORMS, "unique_platforms"),
        (F_HOUR_OF_DAY, "hour_of_day"),
        (F_DAY_COS, "day_cos"),
        (F_LAG1_EVENTS, "lag1_events"),
        (F_LAG24_CPU, "lag24_cpu"),
        (F_MA3_EVENTS, "ma3_events"),
        (F_MA48_CPU, "ma48_cpu"),
        (F_ROLL12_STD, "roll12_std"),
        (F_ROLL24_MIN, "roll24_min"),
        (F_PCT_CHANGE_1H, "pct_change_1h"),
        (F_DIFF_24H, "diff_24h"),
        (F_CPU_MEMORY_RATIO, "cpu_memory_ratio"),
        (F_MEMORY_QUANTILE, "memory_quantile"),
        (F_IS_HIGH_LOAD, "is_high_load"),
        (F_IS_NIGHT, "is_night"),
        (F_SWITCHES_COMPLEXITY, "switches_complexity"),
    ];
    for (i, n) in pairs {
        assert_eq!(FEATURE_NAMES[i], n);
        assert_eq!(index_of(n), Some(i));
    }
    assert_eq!(csv_header().split(',').count(), 84);
    assert_eq!(feature_table().len(), 82);
    assert!(feature_table()
        .iter()
        .all(|d| !d.definition.is_empty() && d.causal));
}

#[test]
fn names_match_the_seed_csv_header() {
    let Some(path) = seed_csv() else { return };
    let text = std::fs::read_to_string(path).expect("readable");
    let header = text.lines().next().expect("header");
    assert_eq!(header.trim_end(), csv_header());
}

// ----- config --------------------------------------------------------------------------

#[test]
fn default_config_is_valid_and_each_bad_key_is_named() {
    FeaturesConfig::default()
        .validate()
        .expect("defaults valid");
    let cases: [(&str, FeaturesConfig); 5] = [
        (
            "bucket_width_secs",
            FeaturesConfig {
                bucket_width_secs: 10,
                ..Default::default()
            },
        ),
        (
            "lateness_secs",
            FeaturesConfig {
                lateness_secs: 100 * 3600,
                ..Default::default()
            },
        ),
        (
            "history_buckets",
            FeaturesConfig {
                history_buckets: 3,
                ..Default::default()
            },
        ),
        (
            "idle_evict_secs",
            FeaturesConfig {
                idle_evict_secs: 60,
                ..Default::default()
            },
        ),
        (
            "utc_offset_secs",
            FeaturesConfig {
                utc_offset_secs: 90_000,
                ..Default::default()
            },
        ),
    ];
    for (key, cfg) in cases {
        match cfg.validate() {
            Err(FeatureError::Config { key: k, message }) => {
                assert_eq!(k, key);
                assert!(
                    message.contains("use"),
                    "message should say the fix: {message}"
                );
            }
            other => panic!("{key}: expected a config error, got {other:?}"),
        }
    }
}

#[test]
fn config_deserialises_with_defaults_and_rejects_unknown_keys() {
    use serde::de::value::{Error, MapDeserializer};
    use serde::Deserialize;
    let cfg = FeaturesConfig::deserialize(MapDeserializer::<_, Error>::new(
        vec![("bucket_width_secs", 1800u64), ("history_buckets", 48)].into_iter(),
    ))
    .expect("partial config");
    assert_eq!(cfg.bucket_width_secs, 1800);
    assert_eq!(cfg.history_buckets, 48);
    assert_eq!(cfg.lateness_secs, FeaturesConfig::default().lateness_secs);
    let bad = FeaturesConfig::deserialize(MapDeserializer::<_, Error>::new(
        vec![("bucket_widht_secs", 1u64)].into_iter(),
    ));
    assert!(bad.is_err());
}

// ----- bucket aggregates (raw family) --------------------------------------------------

fn mcp(id: &str, ts: i64) -> Sample {
    Sample::new(id, ts, Origin::Mcp)
}

#[test]
fn bucket_aggregates_follow_the_spec_table() {
    let mut b = OpenBucket::new(0);
    let cpus = [0.2, 0.4, 0.9, 0.5];
    for (i, c) in cpus.iter().enumerate() {
        let mut s = mcp("a", i as i64);
        s.cpu = Some(*c);
        s.memory = if i % 2 == 0 {
            Some(0.5 + i as f64 / 10.0)
        } else {
            None
        };
        s.requests = Some(10.0 * (i + 1) as f64);
        s.instance_id = Some(format!("i{}", i % 3));
        s.host = Some("h1".into());
        s.platform = Some(if i == 3 { "arm".into() } else { "x86".into() });
        s.event = [
            Some(Lifecycle::Add),
            Some(Lifecycle::Update),
            None,
            Some(Lifecycle::Update),
        ][i];
        s.response_time_ms = Some(10.0 * i as f64);
        s.errors = Some(1.0);
        s.status = Some(
            [
                Status::Healthy,
                Status::Degraded,
                Status::Healthy,
                Status::Healthy,
            ][i],
        );
        b.push(&s);
    }
    let r = RawRow::fill(&b.fields(), None);
    assert_eq!(r.total_events, 100.0);
    assert_eq!(r.aggregates, {
        let mean = cpus.iter().sum::<f64>() / 4.0;
        let std = (cpus.iter().map(|c| (c - mean) * (c - mean)).sum::<f64>() / 3.0).sqrt();
        let mut a = [0f32; 14];
        a[0] = 3.0;
        a[1] = 1.0;
        a[2] = 0.0;
        a[3] = 2.0;
        a[4] = canon_cpu(mean);
        a[5] = 0.6;
        a[6] = std as f32;
        a[7] = ((0.5f64 - 0.6).powi(2) * 2.0).sqrt() as f32;
        a[8] = 0.2;
        a[9] = 0.9;
        a[10] = 0.5;
        a[11] = 0.7;
        a[12] = 1.0;
        a[13] = 2.0;
        a
    });
    let x = b.extras();
    assert_eq!(x.samples, 4);
    assert_eq!(x.avg_response_ms, Some(15.0));
    assert_eq!(x.max_response_ms, Some(30.0));
    assert_eq!(x.errors, 4.0);
    assert_eq!(x.worst_status, Some(Status::Degraded));
}

#[test]
fn events_fall_back_to_sample_count_and_missing_fields_forward_fill() {
    let mut b = OpenBucket::new(0);
    for i in 0..3 {
        b.push(&mcp("a", i));
    }
    let prev = row(7.0, 4.0, 0.3, 0.2);
    let r = RawRow::fill(&b.fields(), Some(&prev));
    assert_eq!(r.total_events, 3.0, "no request counter: sample count");
    assert_eq!(
        r.aggregates[0], 1.0,
        "no instance ids: at least one machine"
    );
    assert_eq!(
        r.aggregates[4], prev.aggregates[4],
        "no cpu: forward-filled"
    );
    assert_eq!(
        r.aggregates[12], prev.aggregates[12],
        "no hosts: forward-filled"
    );
    let first = RawRow::fill(&b.fields(), None);
    assert_eq!(first.aggregates[4], 0.0, "nothing to forward-fill from: 0");
    let gap = RawRow::fill(&[None; 15], Some(&prev));
    assert_eq!(gap, prev, "a gap bucket copies the previous row");
}

#[test]
fn canonical_values_sit_on_their_fixed_point_grids() {
    for x in [
        0.0,
        1.0,
        0.3333,
        4983.272521264176,
        9533.0,
        123456.789,
        9.9e9,
        -3.25,
    ] {
        let e = canon_events(x);
        assert_eq!((e * 1024.0).fract(), 0.0);
        assert!((e - x).abs() <= 0.5 / 1024.0);
        let m = f64::from(canon_machines(x));
        assert_eq!(
            (m * 1_048_576.0).fract(),
            0.0,
            "{x}: f32 rounding keeps the grid"
        );
        if x.abs() < 8.5e9 {
            assert!(
                (m - x).abs() <= 0.5 / 1_048_576.0 + 6e-8 * x.abs(),
                "{x} -> {m}"
            );
        } else {
            assert_eq!(m, 8_589_934_592.0, "machines clamp at 2^33");
        }
    }
    for x in [
        0.0,
        1e-12,
        1e-7,
        0.007,
        0.015625,
        0.38671875,
        0.6734097152151749,
        0.999,
        1.0,
    ] {
        let c = f64::from(canon_cpu(x));
        assert_eq!((c * 1_073_741_824.0).fract(), 0.0);
        assert!((c - x).abs() <= 1e-9 + 6e-8 * x, "{x} -> {c}");
    }
}

#[test]
fn distinct_counts_are_exact_then_estimated() {
    let mut d = Distinct::default();
    for i in 0..200 {
        d.insert(id_hash(&format!("instance-{}", i % 150)));
    }
    assert_eq!(d.count(), 150.0);
    let mut d = Distinct::default();
    for i in 0..20_000 {
        d.insert(id_hash(&format!("machine-{i}")));
    }
    let est = d.count();
    assert!((est / 20_000.0 - 1.0).abs() < 0.1, "HLL estimate {est}");
}

#[test]
fn id_hash_is_pinned() {
    // Stored in snapshots: these values must never change.
    assert_eq!(id_hash(""), 0);
    assert_eq!(
        id_hash("mcp-server-000001-0"),
        id_hash("mcp-server-000001-0")
    );
    assert_ne!(id_hash("a"), id_hash("b"));
    assert_eq!(
        id_hash("instance-1"),
        0xa46e_0dfc,
        "got {:#x}",
        id_hash("instance-1")
    );
}

// ----- time family ---------------------------------------------------------------------

#[test]
fn calendar_parts_match_chrono_and_the_seed_epoch() {
    use chrono::{Datelike, TimeZone, Timelike};
    let seed = TimeParts::at(check::SEED_EPOCH_MS, 0);
    assert_eq!(
        seed,
        TimeParts {
            hour: 0,
            dow: 0,
            dom: 0
        },
        "2011-05-01 00:00Z is a Sunday, the 1st"
    );
    let mut ts: i64 = -86_400_000 * 400;
    for _ in 0..5000 {
        ts += 7_919_113_117;
        for off in [0, 3600, -18_000, 19_800] {
            let p = TimeParts::at(ts, off);
            let dt = chrono::Utc
                .timestamp_millis_opt(ts + i64::from(off) * 1000)
                .single()
                .expect("valid");
            assert_eq!(u32::from(p.hour), dt.hour());
            assert_eq!(u32::from(p.dow), dt.weekday().num_days_from_sunday());
            assert_eq!(u32::from(p.dom), dt.day0());
        }
    }
}

#[test]
fn time_features_and_flags() {
    let cfg = test_config(3600, 0, 168, 0);
    let mut st = ServiceState::new(&cfg);
    // Saturday 2011-05-07 23:00Z
    st.push_row(
        check::SEED_EPOCH_MS + (6 * 24 + 23) * 3_600_000,
        &row(1.0, 1.0, 0.5, 0.5),
        &cfg,
    );
    let v = st.features().expect("one row");
    assert_eq!(v[F_HOUR_OF_DAY], 23.0);
    assert_eq!(v[F_DAY_OF_WEEK], 6.0);
    assert_eq!(v[F_DAY_OF_MONTH], 6.0);
    assert_eq!(
        v[F_HOUR_SIN],
        (2.0 * std::f64::consts::PI * 23.0 / 24.0).sin()
    );
    assert_eq!(v[F_DAY_COS], (2.0 * std::f64::consts::PI * 6.0 / 7.0).cos());
    assert_eq!(
        (v[F_IS_WEEKEND], v[F_IS_NIGHT], v[F_IS_BUSINESS_HOUR]),
        (1.0, 1.0, 0.0)
    );
    // Monday 10:00 local with UTC+2 (08:00Z).
    let cfg2 = test_config(3600, 0, 168, 7200);
    let mut st = ServiceState::new(&cfg2);
    st.push_row(
        check::SEED_EPOCH_MS + (24 + 8) * 3_600_000,
        &row(1.0, 1.0, 0.5, 0.5),
        &cfg2,
    );
    let v = st.features().expect("one row");
    assert_eq!((v[F_HOUR_OF_DAY], v[F_DAY_OF_WEEK]), (10.0, 1.0));
    assert_eq!(
        (v[F_IS_WEEKEND], v[F_IS_NIGHT], v[F_IS_BUSINESS_HOUR]),
        (0.0, 0.0, 1.0)
    );
}

// ----- lag / moving-average / rolling / change / ratio families -------------------------

#[test]
fn lag_ma_roll_change_and_ratio_families_on_a_known_sequence() {
    let cfg = test_config(3600, 0, 168, 0);
    let mut st = ServiceState::new(&cfg);
    let events: Vec<f64> = (0..60).map(|i| f64::from((i * 37) % 23 + 1)).collect();
    for (t, &e) in events.iter().enumerate() {
        st.push_row(
            t as i64 * 3_600_000,
            &row(e, 2.0 + (t % 3) as f64, 0.5, 0.25),
            &cfg,
        );
        let v = st.features().expect("rows");
        let at = |k: usize| events[t.saturating_sub(k)];
        assert_eq!(v[F_LAG1_EVENTS], at(1));
        assert_eq!(v[F_LAG24_EVENTS], at(24));
        assert_eq!(v[F_LAG6_MACHINES], 2.0 + (t.saturating_sub(6) % 3) as f64);
        let w = |k: usize| &events[(t + 1).saturating_sub(k)..=t];
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        assert_eq!(v[F_MA3_EVENTS], mean(w(3)));
        assert_eq!(v[F_MA48_EVENTS], mean(w(48)));
        assert_eq!(v[F_MA12_CPU], 0.5);
        let std = |xs: &[f64]| {
            if xs.len() < 2 {
                0.0
            } else {
                let m = mean(xs);
                (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
            }
        };
        assert!(close(v[F_ROLL12_STD], std(w(12)), 1e-12));
        assert!(close(v[F_ROLL24_STD], std(w(24)), 1e-12));
        assert_eq!(
            v[F_ROLL12_MAX],
            w(12).iter().copied().fold(f64::MIN, f64::max)
        );
        assert_eq!(
            v[F_ROLL24_MIN],
            w(24).iter().copied().fold(f64::MAX, f64::min)
        );
        assert_eq!(v[F_DIFF_6H], events[t] - at(6));
        assert_eq!(v[F_PCT_CHANGE_24H], events[t] / at(24) - 1.0);
        assert_eq!(v[F_CPU_MEMORY_RATIO], 0.5 / (0.25 + 1e-6));
        assert_eq!(v[F_RESOURCE_TOTAL], 0.75);
        assert_eq!(v[F_RESOURCE_EFFICIENCY], events[t] / (0.75 + 1e-6));
        assert_eq!(
            v[F_EVENTS_PER_MACHINE],
            events[t] / (v[F_UNIQUE_MACHINES] + 1e-6)
        );
        assert_eq!(v[F_CPU_EVENTS_INTERACTION], 0.5 * events[t] / 1000.0);
        assert_eq!(
            v[F_MACHINES_EVENTS_RATIO],
            v[F_UNIQUE_MACHINES] / (events[t] + 1.0)
        );
        assert_eq!(v[F_SWITCHES_COMPLEXITY], 6.0);
    }
}

#[test]
fn pct_change_against_zero_is_zero() {
    let cfg = test_config(3600, 0, 168, 0);
    let mut st = ServiceState::new(&cfg);
    st.push_row(0, &row(0.0, 1.0, 0.5, 0.5), &cfg);
    st.push_row(3_600_000, &row(5.0, 1.0, 0.5, 0.5), &cfg);
    let v = st.features().expect("rows");
    assert_eq!(v[F_PCT_CHANGE_1H], 0.0);
    assert_eq!(v[F_DIFF_1H], 5.0);
    assert!(v.iter().all(|x| x.is_finite()));
}

// ----- quantile family -----------------------------------------------------------------

/// numpy's default (linear) quantile.
fn np_quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let f = h.floor() as usize;
    let frac = h - f as f64;
    if f + 1 < sorted.len() {
        sorted[f] + frac * (sorted[f + 1] - sorted[f])
    } else {
        sorted[f]
    }
}

/// Proptest settings: failing seeds are kept beside this file (`tests.proptest-regressions`).
fn pt_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(pt_config(256))]

    #[test]
    fn rank_labels_equal_pandas_definitions(values in prop::collection::vec(0u16..40, 1..60), pick in 0usize..60) {
        let x = values[pick % values.len()];
        let w: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
        let mut sorted = w.clone();
        sorted.sort_by(f64::total_cmp);
        let xf = f64::from(x);
        let r = Rank { lt: w.iter().filter(|v| **v < xf).count(), le: w.iter().filter(|v| **v <= xf).count(), n: w.len() };
        // qcut labels: number of (linear) cut points strictly below x. Integer-valued data keeps
        // the interpolation exact, so this is the exact pandas answer.
        for q in [5usize, 10] {
            let expect = (1..q).filter(|j| xf > np_quantile(&sorted, *j as f64 / q as f64)).count() as u8;
            prop_assert_eq!(defs::qcut_label(r, q), expect);
        }
        prop_assert_eq!(defs::is_high(r), xf > np_quantile(&sorted, 0.8));
        prop_assert_eq!(defs::is_low(r), xf < np_quantile(&sorted, 0.2));
        let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
        let cat = defs::load_category(xf, lo, hi);
        prop_assert!((1..=5).contains(&cat));
        if hi > lo {
            let expect = 1 + (1..5).filter(|i| xf > lo + *i as f64 * (hi - lo) / 5.0).count() as u8;
            prop_assert_eq!(cat, expect);
        }
    }

    #[test]
    fn event_codes_are_monotonic(a in 0f64..1e10, b in 0f64..1e10) {
        let (ca, cb) = (defs::code_events(a), defs::code_events(b));
        if a <= b { prop_assert!(ca <= cb) } else { prop_assert!(ca >= cb) }
        if ca < u16::MAX {
            let d = defs::decode_events(ca);
            prop_assert!((d - a).abs() <= 4e-4 * (a + 1.0), "{} -> {} -> {}", a, ca, d);
        } else {
            prop_assert!(a > 4.29e9, "saturates only above 2^32 events");
        }
    }
}

#[test]
fn quantile_family_ranks_within_the_trailing_window() {
    let cfg = test_config(3600, 0, 24, 0);
    let mut st = ServiceState::new(&cfg);
    for t in 0..30 {
        st.push_row(
            t * 3_600_000,
            &row(if t < 24 { 100.0 } else { 1.0 + t as f64 }, 1.0, 0.5, 0.5),
            &cfg,
        );
    }
    let v = st.features().expect("rows");
    // Window: 18 × 100 then 2..=30 rising over the last 6; the newest (30) is below the 100s.
    assert_eq!(v[F_IS_HIGH_LOAD], 0.0);
    assert_eq!(v[F_LOAD_CATEGORY], 1.0); // (30-25)/(100-25) of the range: first fifth
    let mut st = ServiceState::new(&cfg);
    for t in 0..50 {
        st.push_row(
            t * 3_600_000,
            &row(t as f64, 1.0, 0.01 * t as f64, 0.5),
            &cfg,
        );
    }
    let v = st.features().expect("rows");
    assert_eq!(
        (
            v[F_EVENTS_QUANTILE],
            v[F_CPU_QUANTILE],
            v[F_IS_HIGH_LOAD],
            v[F_IS_LOW_LOAD]
        ),
        (9.0, 4.0, 1.0, 0.0)
    );
    assert_eq!(v[F_LOAD_CATEGORY], 5.0);
    assert_eq!(
        v[F_MEMORY_QUANTILE], 0.0,
        "constant memory: nothing is below"
    );
}

// ----- property tests: engine vs from-scratch --------------------------------------------

#[derive(Debug, Clone)]
struct Step {
    dt_ms: i64,
    jump: bool,
    late_ms: i64,
    svc: u8,
    cpu: Option<f64>,
    memory: Option<f64>,
    requests: Option<f64>,
    event: u8,
    instance: Option<u8>,
    host: Option<u8>,
    platform: Option<u8>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        (0i64..40_000, prop::bool::weighted(0.03), prop_oneof![8 => Just(0i64), 2 => 0i64..150_000]),
        0u8..2,
        (prop::option::weighted(0.9, 0f64..1.0), prop::option::weighted(0.8, 0f64..1.0)),
        prop::option::weighted(
            0.7,
            prop_oneof![6 => (0u32..500).prop_map(f64::from), 2 => 0f64..1000.0, 1 => Just(1e6), 1 => Just(0.0)],
        ),
        0u8..5,
        (prop::option::weighted(0.85, 0u8..7), prop::option::weighted(0.7, 0u8..3), prop::option::weighted(0.7, 0u8..2)),
    )
        .prop_map(|((dt_ms, jump, late_ms), svc, (cpu, memory), requests, event, (instance, host, platform))| Step {
            dt_ms,
            jump,
            late_ms,
            svc,
            cpu,
            memory,
            requests,
            event,
            instance,
            host,
            platform,
        })
}

fn build_samples(steps: &[Step], width_ms: i64) -> Vec<Sample> {
    let mut clock = 1_300_000_000_000i64;
    steps
        .iter()
        .map(|s| {
            clock += s.dt_ms
                + if s.jump {
                    width_ms * (3 + (s.dt_ms % 40))
                } else {
                    0
                };
            let mut x = Sample::new(format!("svc-{}", s.svc), clock - s.late_ms, Origin::Mcp);
            x.cpu = s.cpu;
            x.memory = s.memory;
            x.requests = s.requests;
            x.event = match s.event {
                0 => Some(Lifecycle::Add),
                1 => Some(Lifecycle::Remove),
                2 => Some(Lifecycle::Update),
                _ => None,
            };
            x.instance_id = s.instance.map(|i| format!("inst-{i}"));
            x.host = s.host.map(|h| format!("host-{h}"));
            x.platform = s.platform.map(|p| format!("plat-{p}"));
            x
        })
        .collect()
}

/// A closed bucket from scratch: its index and samples (`None` for a gap fill).
type ScratchBucket = (i64, Option<Vec<Sample>>);

/// From scratch: which samples each bucket of one service holds, and which buckets close.
/// Rules (the spec, restated): a sample is kept iff its bucket's end + lateness is after the
/// largest timestamp kept before it; after each kept sample (and at the final watermark) every
/// bucket whose end + lateness is at or before the watermark closes, in order; missing buckets
/// in between are gap fills, at most `history_buckets` per closing step. Returns the closed
/// buckets (idx, samples or None for a gap) and the late count.
fn scratch_buckets(
    samples: &[&Sample],
    cfg: &FeaturesConfig,
    final_wm: Option<i64>,
) -> (Vec<ScratchBucket>, u64) {
    let (w, l) = (
        cfg.bucket_width_secs as i64 * 1000,
        cfg.lateness_secs as i64 * 1000,
    );
    let h = cfg.history_buckets as i64;
    let mut wm = i64::MIN;
    let mut late = 0;
    let mut kept: BTreeMap<i64, Vec<Sample>> = BTreeMap::new();
    let mut out: Vec<ScratchBucket> = Vec::new();
    let mut last: Option<i64> = None;
    let close = |wm: i64,
                 kept: &mut BTreeMap<i64, Vec<Sample>>,
                 last: &mut Option<i64>,
                 out: &mut Vec<ScratchBucket>| {
        let limit = (wm - l).div_euclid(w);
        loop {
            let next_real = kept.keys().copied().find(|i| last.is_none_or(|p| *i > p));
            match *last {
                None => match next_real {
                    Some(i) if i < limit => {
                        out.push((i, kept.remove(&i)));
                        *last = Some(i);
                    }
                    _ => break,
                },
                Some(p) => {
                    let next = p + 1;
                    if next >= limit {
                        break;
                    }
                    if next_real == Some(next) {
                        out.push((next, kept.remove(&next)));
                        *last = Some(next);
                    } else {
                        let end = next_real.map_or(limit, |i| i.min(limit));
                        for g in next.max(end - h)..end {
                            out.push((g, None));
                        }
                        *last = Some(end - 1);
                    }
                }
            }
        }
    };
    for s in samples {
        let idx = s.ts_ms.div_euclid(w);
        if (idx + 1) * w + l <= wm {
            late += 1;
            continue;
        }
        kept.entry(idx).or_default().push((*s).clone());
        if s.ts_ms > wm {
            wm = s.ts_ms;
            close(wm, &mut kept, &mut last, &mut out);
        }
    }
    if let Some(f) = final_wm {
        if f > wm {
            close(f, &mut kept, &mut last, &mut out);
        }
    }
    (out, late)
}

/// Aggregates a bucket from scratch (two-pass statistics, hash sets).
fn scratch_fields(samples: &[Sample]) -> [Option<f64>; 15] {
    let mut f = [None; 15];
    let req: Vec<f64> = samples.iter().filter_map(|s| s.requests).collect();
    f[0] = Some(if req.is_empty() {
        samples.len() as f64
    } else {
        req.iter().sum()
    });
    let ids: HashSet<&String> = samples
        .iter()
        .filter_map(|s| s.instance_id.as_ref())
        .collect();
    f[1] = Some(ids.len().max(1) as f64);
    for (k, e) in [
        (2, Lifecycle::Add),
        (3, Lifecycle::Remove),
        (4, Lifecycle::Update),
    ] {
        f[k] = Some(samples.iter().filter(|s| s.event == Some(e)).count() as f64);
    }
    for (vals, avg, std, min, max) in [
        (
            samples.iter().filter_map(|s| s.cpu).collect::<Vec<_>>(),
            5,
            7,
            9,
            10,
        ),
        (
            samples.iter().filter_map(|s| s.memory).collect::<Vec<_>>(),
            6,
            8,
            11,
            12,
        ),
    ] {
        if vals.is_empty() {
            continue;
        }
        let n = vals.len() as f64;
        let m = vals.iter().sum::<f64>() / n;
        f[avg] = Some(m);
        f[std] = Some(if vals.len() < 2 {
            0.0
        } else {
            (vals.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt()
        });
        f[min] = Some(vals.iter().copied().fold(f64::INFINITY, f64::min));
        f[max] = Some(vals.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    }
    let hosts: HashSet<&String> = samples.iter().filter_map(|s| s.host.as_ref()).collect();
    let plats: HashSet<&String> = samples.iter().filter_map(|s| s.platform.as_ref()).collect();
    f[13] = (!hosts.is_empty()).then_some(hosts.len() as f64);
    f[14] = (!plats.is_empty()).then_some(plats.len() as f64);
    f
}

fn rows_close(a: &RawRow, b: &RawRow) -> bool {
    // Sums are in the same order (exact equality); statistics differ only by Welford vs
    // two-pass rounding, i.e. at most a couple of f32 ulps.
    a.total_events == b.total_events
        && a.aggregates
            .iter()
            .zip(&b.aggregates)
            .all(|(x, y)| x == y || (x - y).abs() <= 3e-7 * x.abs().max(y.abs()).max(1e-6))
}

proptest! {
    #![proptest_config(pt_config(200))]

    /// Random streams of two services with gaps, late and too-late samples: the buckets the
    /// engine closes equal a from-scratch bucketing, and after every call the incremental
    /// vector equals a from-scratch recomputation over the same buckets (≤ 1e-9).
    #[test]
    fn engine_matches_from_scratch(
        steps in prop::collection::vec(step(), 1..400),
        lateness in prop_oneof![Just(0u64), Just(20), Just(150)],
        history in prop_oneof![Just(24usize), Just(37)],
        utc in -50_400i32..50_400,
        finish in prop::bool::ANY,
    ) {
        let cfg = test_config(60, lateness, history, utc);
        let samples = build_samples(&steps, 60_000);
        let (mut eng, _) = engine(cfg.clone());
        let mut closed: Vec<ClosedBucket> = Vec::new();
        for s in &samples {
            let out = eng.observe(s);
            if !out.is_empty() {
                let id = s.service_id.as_str();
                let st = eng.state(id).expect("state");
                let rows: Vec<(i64, RawRow)> = closed
                    .iter()
                    .chain(out.iter())
                    .filter(|c| &*c.service_id == id)
                    .map(|c| (c.start_ms, c.row))
                    .collect();
                let reference = reference::recompute_tail(&rows, history, utc, WINDOW_ROWS);
                let ours = st.features().expect("closed rows");
                assert_vec_close(&ours, reference.last().expect("rows"), 1e-9, "newest vector");
                // The gathered window (direct recomputation from stored history) too.
                let win = st.window();
                for (k, v) in win.iter().enumerate() {
                    let r = &reference[reference.len() - win.len() + k];
                    assert_vec_close(v, r, 1e-9, "window row");
                }
            }
            closed.extend(out);
        }
        let final_wm = finish.then(|| samples.iter().map(|s| s.ts_ms).max().unwrap_or(0) + 10 * 60_000);
        if let Some(wm) = final_wm {
            closed.extend(eng.advance_to(wm));
        }
        for svc in ["svc-0", "svc-1"] {
            let mine: Vec<&Sample> = samples.iter().filter(|s| s.service_id == svc).collect();
            if mine.is_empty() {
                prop_assert!(!eng.contains(svc));
                continue;
            }
            let (expect, late) = scratch_buckets(&mine, &cfg, final_wm);
            let got: Vec<&ClosedBucket> = closed.iter().filter(|c| &*c.service_id == svc).collect();
            prop_assert_eq!(eng.state(svc).expect("state").late_dropped(), late);
            prop_assert_eq!(got.len(), expect.len(), "closed bucket count for {}", svc);
            let mut prev: Option<RawRow> = None;
            for (c, (idx, bucket)) in got.iter().zip(&expect) {
                prop_assert_eq!(c.start_ms, idx * 60_000);
                prop_assert_eq!(c.gap_filled, bucket.is_none());
                let want = match bucket {
                    Some(b) => RawRow::fill(&scratch_fields(b), prev.as_ref()),
                    None => prev.unwrap_or_default(),
                };
                prop_assert!(rows_close(&c.row, &want), "bucket {}: engine {:?} scratch {:?}", idx, c.row, want);
                prev = Some(c.row);
            }
        }
    }

    /// Row path: arbitrary canonical rows (spikes, zeros, constant runs, fractions) pushed one
    /// by one; after every push the incremental vector equals the reference (≤ 1e-9).
    #[test]
    fn incremental_rows_match_reference(
        vals in prop::collection::vec((prop_oneof![4 => 0f64..100.0, 1 => Just(0.0), 1 => 1e5f64..1e9, 1 => Just(7.0)], 0f64..50.0, 0f64..1.0, 0f64..1.0), 1..250),
        history in prop_oneof![Just(24usize), Just(168)],
    ) {
        let cfg = test_config(3600, 0, history, 0);
        let mut st = ServiceState::new(&cfg);
        let mut rows = Vec::new();
        for (t, (e, m, c, mem)) in vals.iter().enumerate() {
            let r = row(*e, *m, *c, *mem);
            let start = 1_300_000_000_000 + t as i64 * 3_600_000;
            st.push_row(start, &r, &cfg);
            rows.push((start, r));
            let reference = reference::recompute_tail(&rows, history, 0, 1);
            assert_vec_close(&st.features().expect("rows"), reference.last().expect("rows"), 1e-9, "row path");
        }
    }

    /// Snapshots round-trip at any point (open buckets included) and the restored state goes on
    /// exactly like the original.
    #[test]
    fn snapshot_round_trips_mid_stream(steps in prop::collection::vec(step(), 2..200), cut in 0usize..200) {
        let cfg = test_config(60, 150, 24, 0);
        let samples = build_samples(&steps, 60_000);
        let cut = cut % samples.len();
        let (mut a, _) = engine(cfg.clone());
        a.observe_batch(&samples[..cut]);
        let (mut b, _) = engine(cfg.clone());
        for id in a.service_ids().map(str::to_owned).collect::<Vec<_>>() {
            let bytes = a.snapshot(&id).expect("held");
            b.restore(&id, &bytes).expect("decodes");
            prop_assert_eq!(b.snapshot(&id).expect("held"), bytes, "re-encodes identically");
        }
        for s in &samples[cut..] {
            let (x, y) = (a.observe(s), b.observe(s));
            prop_assert_eq!(x, y);
            prop_assert_eq!(a.features(&s.service_id), b.features(&s.service_id));
        }
    }

    /// Decoding never panics on corrupted input.
    #[test]
    fn decode_rejects_garbage_without_panicking(flips in prop::collection::vec((0usize..4000, any::<u8>()), 1..8), cut in 0usize..4000) {
        let cfg = test_config(60, 150, 24, 0);
        let mut st = ServiceState::new(&cfg);
        for t in 0..40 {
            st.push_row(t * 60_000, &row(t as f64, 2.0, 0.3, 0.4), &cfg);
        }
        let mut bytes = st.encode(&cfg);
        for (i, v) in flips {
            let n = bytes.len();
            bytes[i % n] ^= v;
        }
        bytes.truncate(cut.max(1).min(bytes.len()));
        let _ = ServiceState::decode(&bytes, &cfg);
    }
}

// ----- snapshots, eviction, replay, watermark ------------------------------------------

#[test]
fn snapshot_rejects_other_settings_and_versions() {
    let cfg = FeaturesConfig::default();
    let mut st = ServiceState::new(&cfg);
    st.push_row(0, &row(1.0, 1.0, 0.5, 0.5), &cfg);
    let bytes = st.encode(&cfg);
    let other = FeaturesConfig {
        history_buckets: 48,
        ..cfg.clone()
    };
    assert!(matches!(
        ServiceState::decode(&bytes, &other),
        Err(FeatureError::SnapshotMismatch {
            what: "history_buckets",
            ..
        })
    ));
    let mut v2 = bytes.clone();
    v2[4] = 99;
    assert!(
        matches!(ServiceState::decode(&v2, &cfg), Err(FeatureError::Snapshot(m)) if m.contains("version 99"))
    );
    assert!(ServiceState::decode(&bytes[..bytes.len() - 1], &cfg).is_err());
    let back = ServiceState::decode(&bytes, &cfg).expect("round trip");
    assert_eq!(back.features(), st.features());
}

#[test]
fn idle_services_are_evicted_with_their_state_and_restored() {
    let cfg = test_config(60, 10, 24, 0);
    let (mut eng, clock) = engine(FeaturesConfig {
        idle_evict_secs: 600,
        ..cfg
    });
    let mut s = mcp("quiet", 0);
    s.requests = Some(3.0);
    for t in 0..10 {
        s.ts_ms = t * 60_000;
        clock.set(t * 1000);
        eng.observe(&s);
    }
    let mut busy = mcp("busy", 0);
    clock.set(590_000);
    eng.observe(&busy);
    let before = eng.features("quiet");
    assert!(before.is_some());
    clock.set(608_999);
    assert!(eng.evict_idle().is_empty(), "not idle for 600 s yet");
    clock.set(609_000);
    let ev = eng.evict_idle();
    assert_eq!(ev.len(), 1);
    assert_eq!(&*ev[0].service_id, "quiet");
    assert!(!eng.contains("quiet") && eng.contains("busy"));
    eng.restore("quiet", &ev[0].snapshot).expect("restore");
    assert_eq!(eng.features("quiet"), before);
    busy.ts_ms = 700_000;
    eng.observe(&busy);
    assert_eq!(eng.stats().services_evicted, 1);
}

#[test]
fn advance_to_closes_quiet_services_and_caps_gap_fill() {
    let cfg = test_config(60, 0, 24, 0);
    let (mut eng, _) = engine(cfg);
    let mut s = mcp("a", 30_000);
    s.requests = Some(5.0);
    assert!(eng.observe(&s).is_empty(), "bucket still open");
    let out = eng.advance_to(60_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].row.total_events, 5.0);
    let out = eng.advance_to(60_000 * 1000);
    assert_eq!(
        out.len(),
        24,
        "a long gap fills at most history_buckets buckets"
    );
    assert!(out
        .iter()
        .all(|b| b.gap_filled && b.row.total_events == 5.0));
    assert_eq!(out.last().map(|b| b.start_ms), Some(60_000 * 999));
    let s2 = mcp("a", 60_000 * 500);
    assert!(eng.observe(&s2).is_empty());
    assert_eq!(eng.state("a").map(ServiceState::late_dropped), Some(1));
}

#[test]
fn samples_from_the_future_are_dropped_not_trusted() {
    let cfg = FeaturesConfig {
        max_future_secs: 60,
        ..test_config(60, 0, 24, 0)
    };
    let (mut eng, clock) = engine(cfg);
    clock.set(1_000_000);
    let mut s = mcp("a", 1_000_000 + 61_000);
    assert!(eng.observe(&s).is_empty());
    assert_eq!(eng.stats().future_dropped, 1);
    s.ts_ms = 1_000_000;
    eng.observe(&s);
    s.ts_ms = 1_000_000 + 60_000;
    clock.set(1_060_000);
    assert_eq!(
        eng.observe(&s).len(),
        1,
        "the good sample's bucket closes normally"
    );
}

#[test]
fn replayed_buckets_equal_live_closes() {
    let cfg = test_config(60, 0, 24, 0);
    let (mut live, _) = engine(cfg.clone());
    let mut rows = Vec::new();
    for t in 0..40i64 {
        if t % 7 == 3 && t < 30 {
            continue; // a gap (the stream ends with real buckets)
        }
        let mut s = mcp("a", t * 60_000 + 5);
        s.requests = Some((t * t % 13) as f64);
        s.cpu = Some(0.1 * (t % 9) as f64);
        for b in live.observe(&s) {
            if !b.gap_filled {
                rows.push((b.start_ms, b.row));
            }
        }
    }
    let (mut rebuilt, _) = engine(cfg);
    rebuilt.replay_buckets("a", &rows);
    assert_eq!(rebuilt.features("a"), live.features("a"));
    assert_eq!(rebuilt.window("a"), live.window("a"));
}

#[test]
fn window_is_24_rows_ending_with_the_current_vector() {
    let cfg = FeaturesConfig::default();
    let mut st = ServiceState::new(&cfg);
    let mut rows = Vec::new();
    for t in 0..100i64 {
        let r = row(
            (t * 17 % 31) as f64,
            (t % 4) as f64 + 1.0,
            0.01 * (t % 50) as f64,
            0.3,
        );
        st.push_row(t * 3_600_000, &r, &cfg);
        rows.push((t * 3_600_000, r));
    }
    let win = st.window();
    assert_eq!(win.len(), WINDOW_ROWS);
    assert_eq!(win.last().copied(), st.features());
    let reference = reference::recompute(&rows, cfg.history_buckets, 0);
    for (k, v) in win.iter().enumerate() {
        assert_vec_close(v, &reference[100 - 24 + k], 1e-12, "window");
    }
}

#[test]
fn memory_per_service_stays_under_4_kib_with_a_full_history() {
    let cfg = test_config(3600, 300, 168, 0);
    let (mut eng, _) = engine(cfg);
    let mut s = mcp("svc-with-a-typical-name-01", 0);
    s.instance_id = Some("i-1".into());
    s.host = Some("h".into());
    s.platform = Some("linux".into());
    s.cpu = Some(0.5);
    for t in 0..200i64 {
        // Mid-bucket: the previous bucket has closed (lateness 5 min), one bucket is open.
        s.ts_ms = t * 3_600_000 + 1_800_000;
        eng.observe(&s);
    }
    let st = eng.state("svc-with-a-typical-name-01").expect("state");
    assert!(st.rows() >= 168);
    // The state itself (one open bucket; a second one costs ~200 B while the lateness bound
    // overlaps a bucket boundary); the engine adds ~80 B per service for its map slot.
    let bytes = st.memory_bytes();
    assert!(
        bytes <= 4000,
        "{bytes} bytes for one service with a full history"
    );
    let snap = eng
        .snapshot("svc-with-a-typical-name-01")
        .expect("state")
        .len();
    assert!(snap <= 4096, "snapshot {snap} bytes");
}

// ----- seed CSV ------------------------------------------------------------------------

#[test]
fn check_reproduces_every_causal_seed_feature() {
    let Some(path) = seed_csv() else { return };
    let r = run_check(&path).expect("check runs");
    assert_eq!(
        (r.rows, r.observed, r.interpolated, r.resampled),
        (1439, 699, 21, 719)
    );
    assert_eq!(r.matched, 76, "{r}");
    assert!(r.max_rel_err < 1e-6);
    for c in &r.features {
        let seed = feature_table()[index_of(c.name).expect("name")].seed;
        match seed {
            defs::SeedRelation::Same => assert_eq!(c.verdict, FeatureVerdict::Match, "{}", c.name),
            defs::SeedRelation::SameAfterWarmup => {
                assert_eq!(c.verdict, FeatureVerdict::MatchAfterWarmup, "{}", c.name)
            }
            defs::SeedRelation::CausalReplacement => {
                assert_eq!(c.verdict, FeatureVerdict::SeedNonCausal, "{}", c.name);
                // The seed's own whole-file definition is reproduced by our formulas (one
                // cpu_quantile row sits on a one-ulp tie of numpy's interpolation).
                assert!(
                    c.seed_definition_reproduced.expect("quantile family") + 1 >= c.compared,
                    "{}",
                    c.name
                );
            }
        }
    }
    assert!(r
        .to_string()
        .lines()
        .last()
        .expect("lines")
        .starts_with("matched=76/82 max_rel_err="));
}

#[test]
fn export_then_check_agrees_on_all_82() {
    let Some(path) = seed_csv() else { return };
    let dir = std::env::temp_dir().join(format!("mcpwatch-features-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let out = dir.join("export.csv");
    let n = export_csv(&path, &out).expect("export");
    assert_eq!(n, 720);
    let r = run_check(&out).expect("check export");
    assert_eq!(r.matched, 82, "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn row_export_has_one_row_per_input_row_and_checks_on_every_row() {
    let Some(path) = seed_csv() else { return };
    let dir = std::env::temp_dir().join(format!("mcpwatch-features-rows-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let out = dir.join("export_rows.csv");
    let n = export_csv_with(&path, &out, CheckGrid::EveryRow).expect("export");
    assert_eq!(n, 1439);
    let text = std::fs::read_to_string(&out).expect("read");
    assert_eq!(text.lines().count(), 1440);
    assert!(text.lines().nth(2).expect("row 2").starts_with("0.5,"));
    let opts = CheckOptions {
        grid: CheckGrid::EveryRow,
        ..CheckOptions::default()
    };
    let r = run_check_with(&out, &opts).expect("check export");
    assert_eq!(r.rows, 1439);
    assert_eq!(r.matched, 82, "{r}");
    // The buckets the evaluation feeds the engine are the export's raw columns.
    let buckets = seed_csv_buckets(&path).expect("buckets");
    assert_eq!(buckets.len(), 1439);
    assert_eq!(buckets[1].0 - buckets[0].0, 1_800_000);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_reports_bad_files_clearly() {
    let dir = std::env::temp_dir().join(format!("mcpwatch-features-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let p = dir.join("bad.csv");
    std::fs::write(&p, "hour_offset,total_events\n0,1\n").expect("write");
    match run_check(&p) {
        Err(FeatureError::Csv {
            line: 1, message, ..
        }) => assert!(message.contains("missing column")),
        other => panic!("expected a CSV error, got {other:?}"),
    }
    assert!(matches!(
        run_check(&dir.join("absent.csv")),
        Err(FeatureError::Io { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- bench ---------------------------------------------------------------------------

#[test]
fn engine_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<FeatureEngine>();
    assert_send::<ServiceState>();
    assert_send::<ClosedBucket>();
}

#[test]
fn bench_smoke() {
    let r = run_bench(40, 20_000);
    assert_eq!(r.samples, 20_000);
    assert!(r.min_rows_per_service >= 168, "{r}");
    assert!(r.late_dropped > 0 && r.gap_buckets > 0);
    assert!(
        r.bytes_per_service > 3000.0 && r.bytes_per_service < 5000.0,
        "{r}"
    );
    let last = r.to_string().lines().last().expect("lines").to_owned();
    assert!(
        last.starts_with("ns_per_sample=") && last.contains(" bytes_per_service="),
        "{last}"
    );
}
