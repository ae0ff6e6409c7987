//! Tests of the forecast stage. The ones marked "needs ONNX Runtime" load the library fetched
//! by `make ort` (CI runs it first) and fail with that instruction when it is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prometheus_client::registry::Registry;

use super::accuracy::AccuracyTracker;
use super::metadata::ModelMetadata;
use super::onnx::locate_library_with;
use super::router::{Engine, RouteKey};
use super::*;
use crate::features::{
    seed_csv_buckets, seed_csv_hourly_buckets, CheckGrid, FeatureEngine, FeaturesConfig,
    ManualClock, RawRow, FEATURE_NAMES, HOUR_BUCKET_SECS, N_FEATURES, ROW_BUCKET_SECS,
};

// ----- helpers -------------------------------------------------------------------------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mcpwatch-forecast-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// A metadata document for tests: bounds ±100, center 1, scale 2, target center 10 scale 5.
fn meta_json(log: bool) -> serde_json::Value {
    serde_json::json!({
        "name": "lstm_test_v1",
        "target": "total_events",
        "sequence_length": 24,
        "horizon": 24,
        "row_interval_minutes": 30,
        "feature_names": FEATURE_NAMES.to_vec(),
        "feature_scaler": {"center": vec![1.0; N_FEATURES], "scale": vec![2.0; N_FEATURES]},
        "target_scaler": {"center": 10.0, "scale": 5.0},
        "use_log_transform": log,
        "clip_bounds": {"features": {"lower": vec![-100.0; N_FEATURES], "upper": vec![100.0; N_FEATURES]},
                        "target": {"lower": 0.0, "upper": 1000.0}},
        "output_min": 0.0,
        "onnx": {"file": "lstm_test_v1.onnx",
                 "inputs": [{"name": "features", "dtype": "float32", "shape": ["batch", 24, 82]}],
                 "outputs": [{"name": "forecast", "dtype": "float32", "shape": ["batch", 24]}]}
    })
}

fn parse(v: &serde_json::Value) -> Result<ModelMetadata, ForecastError> {
    ModelMetadata::parse(Path::new("models/lstm_test_v1.json"), &v.to_string())
}

fn input(id: &str, rows: u64, history: Vec<f64>, ctx: ForecastContext) -> ForecastInput {
    ForecastInput {
        service_id: Arc::from(id),
        context: ctx,
        window: vec![[0.0; N_FEATURES]; (rows as usize).min(24)],
        history,
        rows,
        last_bucket_ms: 1_800_000 * 100,
    }
}

/// The daemon's default bucket width (1 h), the one the default model is trained for.
fn default_width() -> u64 {
    FeaturesConfig::default().bucket_width_secs
}

/// A config whose runtime library does not exist (the library-less machine).
fn no_runtime_config() -> ForecastConfig {
    ForecastConfig {
        ort_library: Some(PathBuf::from(
            "/nonexistent/mcpwatch/libonnxruntime.so.1.31.1",
        )),
        model: repo().join(config::DEFAULT_MODEL),
        ..ForecastConfig::default()
    }
}

/// The library `make ort` fetched; a clear failure (not a panic inside `ort`) when absent.
fn runtime_or_fail() -> OnnxRuntime {
    OnnxRuntime::load(None).unwrap_or_else(|e| {
        panic!(
            "this test needs ONNX Runtime: {e}\n  run `make ort` in {} first",
            repo().display()
        )
    })
}

/// The default config (the model for 1-hour buckets), its model found from the repository.
fn default_config() -> ForecastConfig {
    ForecastConfig {
        model: repo().join(config::DEFAULT_MODEL),
        ..ForecastConfig::default()
    }
}

/// The model for 30-minute buckets (`lstm_total_events_v2`, the demo's) routed by default.
fn half_hour_config() -> ForecastConfig {
    ForecastConfig {
        model: repo().join(config::HALF_HOUR_MODEL),
        routes: BTreeMap::from([("default".to_string(), config::HALF_HOUR_ROUTE.to_string())]),
        ..ForecastConfig::default()
    }
}

fn seed_csv() -> Option<PathBuf> {
    let p = std::env::var_os("MCPWATCH_SEED_CSV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data/cluster/lstm_ready_cluster_data.csv"));
    if p.exists() {
        Some(p)
    } else {
        eprintln!("seed CSV not found at {}: skipping", p.display());
        None
    }
}

fn metrics_text(m: &ForecastMetrics) -> String {
    let mut r = Registry::default();
    m.register(&mut r);
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, &r).expect("encode");
    s
}

// ----- metadata: validation, scaling and its inverse -------------------------------------

#[test]
fn metadata_parses_and_finds_the_graph_next_to_it() {
    let m = parse(&meta_json(false)).expect("valid");
    assert_eq!(m.name, "lstm_test_v1");
    assert_eq!(m.horizon, 24);
    assert_eq!(m.onnx_path, Path::new("models/lstm_test_v1.onnx"));
    assert!(m.check_bucket_width(1800).is_ok());
    let e = m.check_bucket_width(3600).unwrap_err().to_string();
    assert!(
        e.contains("row_interval_minutes") && e.contains("bucket_width_secs = 1800"),
        "{e}"
    );
}

#[test]
fn scale_window_clips_scales_and_forward_fills() {
    let m = parse(&meta_json(false)).expect("valid");
    let mut w = vec![[0.0; N_FEATURES]; 24];
    w[0][0] = 5.0; // (5 - 1) / 2 = 2
    w[0][1] = 1e6; // clipped to 100 → 49.5
    w[0][2] = -1e6; // clipped to -100 → -50.5
    w[1][0] = f64::NAN; // forward-filled from row 0 → 2
    w[0][3] = f64::INFINITY; // nothing before: 0 → -0.5
    let mut out = vec![0f32; 24 * N_FEATURES];
    m.scale_window(&w, &mut out);
    assert_eq!(out[0], 2.0);
    assert_eq!(out[1], 49.5);
    assert_eq!(out[2], -50.5);
    assert_eq!(out[3], -0.5);
    assert_eq!(out[N_FEATURES], 2.0);
    assert_eq!(out[N_FEATURES + 4], -0.5);
}

#[test]
fn inverse_target_follows_the_recipe() {
    let plain = parse(&meta_json(false)).expect("valid");
    assert_eq!(plain.inverse_target(1.0), 15.0); // 1 * 5 + 10
    assert_eq!(plain.inverse_target(-4.0), 0.0); // -10 floored at output_min
    assert_eq!(plain.inverse_target(f32::NAN), 0.0);
    let log = parse(&meta_json(true)).expect("valid");
    let y = log.inverse_target(-1.6); // -8 + 10 = 2 → expm1(2)
    assert!((y - 2f64.exp_m1()).abs() < 1e-5, "{y}");
}

#[test]
fn metadata_mismatches_name_the_file_the_field_and_the_fix() {
    let mut v = meta_json(false);
    v["feature_names"][5] = serde_json::json!("avg_mem");
    let e = parse(&v).unwrap_err().to_string();
    assert!(e.contains("models/lstm_test_v1.json"), "{e}");
    assert!(
        e.contains("feature_names[5]") && e.contains("avg_memory"),
        "{e}"
    );
    assert!(
        e.contains("fix:") && e.contains("mcpwatch features export"),
        "{e}"
    );

    let mut v = meta_json(false);
    v["feature_names"].as_array_mut().expect("array").pop();
    let e = parse(&v).unwrap_err().to_string();
    assert!(e.contains("`feature_names`") && e.contains("81"), "{e}");

    let mut v = meta_json(false);
    v["feature_scaler"]["scale"][7] = serde_json::json!(0.0);
    let e = parse(&v).unwrap_err().to_string();
    assert!(
        e.contains("feature_scaler.scale[7]") && e.contains("std_memory"),
        "{e}"
    );

    let mut v = meta_json(false);
    v["sequence_length"] = serde_json::json!(48);
    assert!(parse(&v)
        .unwrap_err()
        .to_string()
        .contains("`sequence_length`"));

    let mut v = meta_json(false);
    v["onnx"]["inputs"][0]["shape"] = serde_json::json!(["batch", 24, 79]);
    let e = parse(&v).unwrap_err().to_string();
    assert!(
        e.contains("onnx.inputs[0].shape") && e.contains("[batch, 24, 82]"),
        "{e}"
    );

    let e = ModelMetadata::parse(Path::new("x.json"), "{}")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("x.json") && e.contains("not model metadata"),
        "{e}"
    );
    let e = ModelMetadata::load(Path::new("/nonexistent/m.json")).unwrap_err();
    assert!(matches!(e, ForecastError::ModelFile { .. }), "{e}");
}

// ----- router ----------------------------------------------------------------------------

#[test]
fn router_picks_the_most_specific_route() {
    let table: BTreeMap<String, String> = [
        ("default", "lstm_total_events_v1"),
        ("web_peak_prod", "lstm_web_peak_v2"),
        ("web_any_any", "web_normal_v1"),
        ("any_peak_any", "lstm_peak_v1"),
        ("any_any_dev", "baseline_dev_v1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = Router::from_table(&table).expect("valid");
    let ctx = |st, ts, env| ForecastContext {
        service_type: st,
        time_slot: ts,
        runtime_env: env,
    };
    use RuntimeEnv::*;
    use ServiceType::*;
    use TimeSlot::*;
    let v = |c| r.route(&c).version.clone();
    assert_eq!(v(ctx(Web, Peak, Prod)), "lstm_web_peak_v2");
    assert_eq!(v(ctx(Web, Normal, Prod)), "web_normal_v1");
    // Same specificity: service type beats time slot.
    assert_eq!(v(ctx(Web, Peak, Dev)), "web_normal_v1");
    assert_eq!(v(ctx(Api, Peak, Prod)), "lstm_peak_v1");
    assert_eq!(v(ctx(Db, Low, Dev)), "baseline_dev_v1");
    assert_eq!(v(ctx(Db, Weekend, Prod)), "lstm_total_events_v1");
    assert_eq!(r.route(&ctx(Web, Peak, Prod)).engine, Engine::Lstm);
    assert_eq!(r.route(&ctx(Web, Normal, Prod)).engine, Engine::Baseline);
    assert_eq!(Engine::for_version("LSTM_x"), Engine::Lstm);
    assert_eq!(Engine::for_version("web_normal_v1"), Engine::Baseline);
    assert_eq!(ForecastContext::default().to_string(), "web_normal_prod");
}

#[test]
fn route_keys_are_checked() {
    assert!(RouteKey::parse("default").is_ok());
    assert!(RouteKey::parse("any_weekend_dev").is_ok());
    assert!(RouteKey::parse("web_peak")
        .unwrap_err()
        .contains("three parts"));
    assert!(RouteKey::parse("mobile_any_any")
        .unwrap_err()
        .contains("service_type"));
    let mut c = ForecastConfig::default();
    c.routes.insert("web_rush_prod".into(), "lstm_x".into());
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("forecast.routes.web_rush_prod")
            && e.contains("time_slot")
            && e.contains("fix:"),
        "{e}"
    );
    let mut c = ForecastConfig::default();
    c.routes.remove("default");
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("forecast.routes.default"));
}

#[test]
fn time_slot_of_a_moment() {
    // 2026-01-05 is a Monday.
    let monday = 1_767_571_200_000i64;
    let h = 3_600_000i64;
    assert_eq!(TimeSlot::at(monday + 10 * h, 0), TimeSlot::Peak);
    assert_eq!(TimeSlot::at(monday + 3 * h, 0), TimeSlot::Low);
    assert_eq!(TimeSlot::at(monday + 20 * h, 0), TimeSlot::Normal);
    assert_eq!(TimeSlot::at(monday - 10 * h, 0), TimeSlot::Weekend);
    // UTC+9: 01:00Z Monday is 10:00 local.
    assert_eq!(TimeSlot::at(monday + h, 9 * 3600), TimeSlot::Peak);
}

// ----- config ----------------------------------------------------------------------------

#[test]
fn config_defaults_validate_and_errors_name_key_and_fix() {
    ForecastConfig::default()
        .validate()
        .expect("defaults are valid");
    for (mutate, key) in [
        (
            Box::new(|c: &mut ForecastConfig| c.batch_size = 0) as Box<dyn Fn(&mut ForecastConfig)>,
            "forecast.batch_size",
        ),
        (
            Box::new(|c: &mut ForecastConfig| c.workers = 0),
            "forecast.workers",
        ),
        (
            Box::new(|c: &mut ForecastConfig| c.cadence_secs = 0),
            "forecast.cadence_secs",
        ),
        (
            Box::new(|c: &mut ForecastConfig| c.model = PathBuf::from("models/x.onnx")),
            "forecast.model",
        ),
        (
            Box::new(|c: &mut ForecastConfig| c.ort_library = Some(PathBuf::new())),
            "forecast.ort_library",
        ),
    ] {
        let mut c = ForecastConfig::default();
        mutate(&mut c);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("fix:"), "{e}");
    }
}

#[test]
fn config_reads_from_toml_with_routes() {
    use figment::providers::{Format, Toml};
    let c: ForecastConfig = figment::Figment::from(Toml::string(
        r#"
        model = "models/m.json"
        batch_size = 128
        [routes]
        default = "lstm_total_events_v1"
        any_any_dev = "baseline_dev_v1"
        "#,
    ))
    .extract()
    .expect("parses");
    c.validate().expect("valid");
    assert_eq!(c.batch_size, 128);
    assert_eq!(c.workers, 2);
    assert_eq!(c.routes.len(), 2);
}

// ----- baseline --------------------------------------------------------------------------

#[test]
fn baseline_is_seasonal_with_a_day_of_history_and_flat_before() {
    assert_eq!(season_buckets(1800), 48);
    assert_eq!(season_buckets(3600), 24);
    assert_eq!(baseline_forecast(&[], 48, 3), vec![0.0; 3]);
    // Short history: mean of what there is.
    assert_eq!(baseline_forecast(&[2.0, 4.0], 48, 2), vec![3.0, 3.0]);
    // One day (season 4): 0.75 · same time yesterday + 0.25 · mean of the last (up to 24).
    let h = [10.0, 20.0, 30.0, 40.0];
    let f = baseline_forecast(&h, 4, 6);
    let mean = 25.0;
    assert_eq!(f[0], 0.75 * 10.0 + 0.25 * mean);
    assert_eq!(f[3], 0.75 * 40.0 + 0.25 * mean);
    // Beyond one season it reaches two days back: bucket n+4 is two days after bucket 0.
    assert_eq!(f[4], 0.75 * 10.0 + 0.25 * mean);
    assert_eq!(f[5], 0.75 * 20.0 + 0.25 * mean);
    // Three days out it reaches three days back.
    assert_eq!(
        baseline_forecast(&h[1..], 3, 7)[6],
        0.75 * 20.0 + 0.25 * 30.0
    );
    // Never negative; non-finite history counts as 0.
    assert!(baseline_forecast(&[-5.0, f64::NAN], 48, 2)
        .iter()
        .all(|v| *v == 0.0));
}

// ----- fallback rules --------------------------------------------------------------------

/// Must show 3: without the ONNX Runtime library the forecaster still serves forecasts (the
/// baseline) and says why — in every output, in the metrics, and once in the log.
#[tokio::test]
async fn without_the_runtime_library_forecasts_come_from_the_baseline_and_say_why() {
    let metrics = ForecastMetrics::default();
    let f = Forecaster::new(no_runtime_config(), default_width(), metrics.clone())
        .expect("config is valid");
    let (reason, message) = f.lstm_status().expect("LSTM unavailable");
    assert_eq!(reason, FallbackReason::RuntimeMissing);
    assert!(
        message.contains("onnx runtime library not found"),
        "{message}"
    );
    assert!(
        message.contains("/nonexistent/mcpwatch/libonnxruntime.so.1.31.1"),
        "{message}"
    );
    assert!(message.contains("make ort"), "{message}");

    let history: Vec<f64> = (0..48).map(|k| 100.0 + k as f64).collect();
    let inputs: Vec<ForecastInput> = (0..300)
        .map(|i| {
            input(
                &format!("svc-{i}"),
                500,
                history.clone(),
                ForecastContext::default(),
            )
        })
        .collect();
    let out = f.forecast_all(inputs).await;
    assert_eq!(out.len(), 300);
    for (i, o) in out.iter().enumerate() {
        assert_eq!(&*o.service_id, format!("svc-{i}"), "order kept");
        assert_eq!(o.model_version, BASELINE_VERSION);
        assert_eq!(o.routed_version, config::DEFAULT_ROUTE);
        assert_eq!(o.fallback_reason, Some(FallbackReason::RuntimeMissing));
        assert_eq!(o.values.len(), 24);
        assert_eq!(o.values, baseline_forecast(&history, 24, 24));
        assert_eq!(o.first_bucket_ms, 1_800_000 * 100 + 3_600_000);
        assert_eq!(o.step_ms, 3_600_000);
    }
    let json = serde_json::to_value(&out[0]).expect("json");
    assert_eq!(json["model_version"], "baseline_seasonal_v1");
    assert_eq!(json["fallback_reason"], "runtime_missing");

    let text = metrics_text(&metrics);
    assert!(
        text.contains("mcpwatch_forecast_runtime_available 0"),
        "{text}"
    );
    assert!(
        text.contains("mcpwatch_forecast_fallbacks_total{reason=\"runtime_missing\"} 300"),
        "{text}"
    );
    assert!(
        text.contains("mcpwatch_forecast_forecasts_total{model_version=\"baseline_seasonal_v1\",fallback_reason=\"runtime_missing\"} 300"),
        "{text}"
    );
}

#[test]
fn library_search_order() {
    let d = tmp_dir("search");
    let exe = d.join("bin");
    let local = d.join("lib");
    std::fs::create_dir_all(&exe).expect("dir");
    std::fs::create_dir_all(&local).expect("dir");
    let in_local = local.join("libonnxruntime.so.1.31.1");
    std::fs::write(&in_local, b"").expect("write");
    // Nothing configured: ./lib.
    assert_eq!(
        locate_library_with(None, None, Some(exe.clone()), &local).expect("found"),
        in_local
    );
    // Next to the executable wins over ./lib.
    let in_exe = exe.join("libonnxruntime.so");
    std::fs::write(&in_exe, b"").expect("write");
    assert_eq!(
        locate_library_with(None, None, Some(exe.clone()), &local).expect("found"),
        in_exe
    );
    // The environment wins over both, and must exist.
    assert_eq!(
        locate_library_with(None, Some(in_local.clone()), Some(exe.clone()), &local)
            .expect("found"),
        in_local
    );
    let e =
        locate_library_with(None, Some(d.join("nope.so")), Some(exe.clone()), &local).unwrap_err();
    assert!(
        e.to_string().contains("ORT_DYLIB_PATH") && e.to_string().contains("nope.so"),
        "{e}"
    );
    // The config wins over everything, and must exist too.
    let e = locate_library_with(
        Some(&d.join("missing.so")),
        Some(in_local.clone()),
        Some(exe.clone()),
        &local,
    )
    .unwrap_err();
    assert!(matches!(e, ForecastError::RuntimeMissing { .. }));
    assert!(e.to_string().contains("forecast.ort_library"), "{e}");
    // Nothing anywhere.
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let e = locate_library_with(None, None, Some(empty.clone()), &empty.join("lib")).unwrap_err();
    assert!(e.to_string().contains("make ort"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_missing_or_mismatched_model_falls_back_and_names_the_problem() {
    let d = tmp_dir("badmodel");
    let config = ForecastConfig {
        model: d.join("absent.json"),
        ..ForecastConfig::default()
    };
    let f =
        Forecaster::new(config, ROW_BUCKET_SECS, ForecastMetrics::default()).expect("valid config");
    let (reason, message) = f.lstm_status().expect("unavailable");
    assert_eq!(reason, FallbackReason::ModelMissing);
    assert!(message.contains("absent.json"), "{message}");

    let mut v = meta_json(false);
    v["feature_names"][30] = serde_json::json!("lag5_events");
    let path = d.join("lstm_test_v1.json");
    std::fs::write(&path, v.to_string()).expect("write");
    let config = ForecastConfig {
        model: path.clone(),
        ..ForecastConfig::default()
    };
    let f =
        Forecaster::new(config, ROW_BUCKET_SECS, ForecastMetrics::default()).expect("valid config");
    let (reason, message) = f.lstm_status().expect("unavailable");
    assert_eq!(reason, FallbackReason::ModelInvalid);
    assert!(
        message.contains("feature_names[30]") && message.contains("lag6_events"),
        "{message}"
    );
    let out = f
        .forecast_all(vec![input(
            "a",
            100,
            vec![1.0; 48],
            ForecastContext::default(),
        )])
        .await;
    assert_eq!(out[0].model_version, BASELINE_VERSION);
    assert_eq!(out[0].fallback_reason, Some(FallbackReason::ModelInvalid));
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_baseline_route_is_not_a_fallback() {
    let mut config = no_runtime_config();
    config.routes = BTreeMap::from([("default".to_string(), "web_normal_v1".to_string())]);
    let metrics = ForecastMetrics::default();
    let f = Forecaster::new(config, ROW_BUCKET_SECS, metrics.clone()).expect("valid");
    let out = f
        .forecast_all(vec![input(
            "a",
            3,
            vec![4.0, 6.0],
            ForecastContext::default(),
        )])
        .await;
    assert_eq!(out[0].model_version, "web_normal_v1");
    assert_eq!(out[0].fallback_reason, None);
    assert_eq!(out[0].values, vec![5.0; 24]);
    assert!(!metrics_text(&metrics).contains("mcpwatch_forecast_fallbacks_total{"));
}

// ----- inputs from the engine ------------------------------------------------------------

fn engine_with(rows: &[(i64, RawRow)]) -> FeatureEngine {
    let config = FeaturesConfig {
        bucket_width_secs: ROW_BUCKET_SECS,
        ..FeaturesConfig::default()
    };
    let mut e = FeatureEngine::new(
        config,
        Arc::new(ManualClock::new(rows.last().map_or(0, |r| r.0))),
    )
    .expect("engine");
    e.replay_buckets("s", rows);
    e
}

fn rows_of(values: &[f64]) -> Vec<(i64, RawRow)> {
    values
        .iter()
        .enumerate()
        .map(|(k, v)| {
            (
                k as i64 * 1_800_000,
                RawRow::from_values(*v, &[1.0; 14], None),
            )
        })
        .collect()
}

#[test]
fn history_is_recovered_exactly_from_the_window() {
    let values: Vec<f64> = (0..100).map(|k| (k * 7 % 31) as f64 + 0.5).collect();
    for n in [1usize, 10, 24, 30, 47, 48, 49, 100] {
        let e = engine_with(&rows_of(&values[..n]));
        let i = ForecastInput::from_engine(&e, "s", ForecastContext::default()).expect("input");
        let want = &values[n.saturating_sub(48)..n];
        assert_eq!(i.history, want, "n={n}");
        assert_eq!(i.rows, n as u64);
        assert_eq!(i.window.len(), n.min(24));
        assert_eq!(i.last_bucket_ms, (n as i64 - 1) * 1_800_000);
    }
    assert!(
        ForecastInput::from_engine(&engine_with(&[]), "s", ForecastContext::default()).is_none()
    );
}

/// Train/serve consistency: the window the daemon (and the evaluation) feeds the model at
/// origin t is exactly rows t-24..t-1 of `features export --grid rows`, the training data.
#[test]
fn engine_windows_equal_the_row_export_the_model_is_trained_on() {
    let Some(csv) = seed_csv() else { return };
    let d = tmp_dir("consistency");
    let out = d.join("rows.csv");
    crate::features::export_csv_with(&csv, &out, crate::features::CheckGrid::EveryRow)
        .expect("export");
    let text = std::fs::read_to_string(&out).expect("read");
    let export: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|x| x.parse::<f64>().expect("number"))
                .collect()
        })
        .collect();
    let buckets = seed_csv_buckets(&csv).expect("buckets");
    let mut engine = engine_with(&[]);
    for t in [24usize, 100, 1151, 1415] {
        engine.replay_buckets("s", &buckets[..t]);
        let i =
            ForecastInput::from_engine(&engine, "s", ForecastContext::default()).expect("input");
        assert_input_matches_export(&i, &export, t);
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// The engine's input after `t` buckets equals the export's rows `t-24..t` (window) and the
/// last 48 targets (history). The newest row is bit-identical; older rows are recomputed from
/// the stored history by `window()` rather than read from the running sums, which can differ in
/// the last bit of the rolling std (far below the f32 the model consumes).
fn assert_input_matches_export(i: &ForecastInput, export: &[Vec<f64>], t: usize) {
    for (k, row) in i.window.iter().enumerate() {
        let e = &export[t - 24 + k];
        for j in 0..N_FEATURES {
            let (a, b) = (row[j], e[2 + j]);
            let tol = if k == 23 {
                0.0
            } else {
                1e-12 * a.abs().max(b.abs())
            };
            assert!(
                (a - b).abs() <= tol,
                "t={t} row {k} feature {}: {a} vs {b}",
                FEATURE_NAMES[j]
            );
        }
    }
    let target: Vec<f64> = export[t.saturating_sub(48)..t]
        .iter()
        .map(|r| r[1])
        .collect();
    assert_eq!(i.history, target, "t={t}");
}

// ----- accuracy --------------------------------------------------------------------------

#[test]
fn accuracy_tracker_scores_matured_points_per_model() {
    let metrics = ForecastMetrics::default();
    // 30-minute buckets (season 48), a new tracked forecast at most every 2 buckets.
    let mut t = AccuracyTracker::new(1800, 2, 100).with_metrics(metrics.clone());
    let id: Arc<str> = Arc::from("svc");
    let step = 1_800_000i64;
    // A day of actuals, value 10 each, so seasonal naive is known afterwards.
    for k in 0..48 {
        assert_eq!(t.observe_actual("svc", k * step, 10.0), 0);
    }
    assert!(t.record_forecast(&id, "lstm_a", 48 * step, &[12.0, 9.0]));
    assert!(
        !t.record_forecast(&id, "lstm_a", 49 * step, &[1.0, 1.0]),
        "too soon"
    );
    assert_eq!(t.observe_actual("svc", 48 * step, 11.0), 1); // |12-11| = 1, naive |10-11| = 1
    assert_eq!(t.observe_actual("svc", 49 * step, 13.0), 1); // |9-13| = 4, naive |10-13| = 3
    let a = &t.accuracy()[0];
    assert_eq!(a.model_version, "lstm_a");
    assert_eq!(a.points, 2);
    assert_eq!(a.mae, 2.5);
    assert_eq!(a.mase, Some(5.0 / 4.0));
    assert!(t.record_forecast(&id, "baseline_seasonal_v1", 50 * step, &[0.0]));
    assert_eq!(t.observe_actual("svc", 50 * step, 2.0), 1);
    assert_eq!(t.accuracy().len(), 2);
    let text = metrics_text(&metrics);
    assert!(
        text.contains("mcpwatch_forecast_mae{model_version=\"lstm_a\"} 2.5"),
        "{text}"
    );
    assert!(
        text.contains("mcpwatch_forecast_mase{model_version=\"lstm_a\"} 1.25"),
        "{text}"
    );
    assert!(
        text.contains("mcpwatch_forecast_matured_points_total{model_version=\"lstm_a\"} 2"),
        "{text}"
    );
    t.forget("svc");
}

#[test]
fn accuracy_tracker_feeds_each_history_bucket_once() {
    let mut t = AccuracyTracker::new(3600, 24, 100);
    let id: Arc<str> = Arc::from("svc");
    let step = 3_600_000i64;
    // the loop's first look: 3 closed buckets, none forecast yet
    assert_eq!(t.observe_history("svc", 2 * step, &[1.0, 2.0, 3.0]), 0);
    assert!(t.record_forecast(&id, "lstm_h", 3 * step, &[5.0, 7.0, 9.0]));
    // next cycle, no new bucket: nothing matures, nothing is counted twice
    assert_eq!(t.observe_history("svc", 2 * step, &[1.0, 2.0, 3.0]), 0);
    // two buckets later (a slow cycle): both mature, in order, once
    assert_eq!(t.observe_history("svc", 4 * step, &[2.0, 3.0, 4.0, 4.0]), 2);
    assert_eq!(t.observe_history("svc", 4 * step, &[2.0, 3.0, 4.0, 4.0]), 0);
    let a = &t.accuracy()[0];
    assert_eq!(a.points, 2);
    assert_eq!(a.mae, (1.0 + 3.0) / 2.0);
}

// ----- with the real runtime and model (needs ONNX Runtime: `make ort`) -----------------

#[tokio::test]
async fn the_shipped_model_runs_in_rust_and_matches_its_reference_outputs() {
    let rt = runtime_or_fail();
    assert!(rt.library().is_absolute());
    let config = half_hour_config();
    let meta = ModelMetadata::load(&config.model).expect("shipped metadata is valid");
    let mut session = LstmSession::open(&rt, &meta, 1).expect("shipped graph opens");

    // A reference computed by the Python pipeline (onnxruntime, the metadata's recipe) on the
    // same raw windows, next to this file. Regenerate with src/forecast/testdata/golden.py.
    let golden_path = repo().join("src/forecast/testdata/golden.json");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&golden_path).expect("golden file"))
            .expect("json");
    let sha = meta.onnx.sha256.clone().unwrap_or_default();
    assert_eq!(
        golden["onnx_sha256"].as_str(),
        Some(sha.as_str()),
        "{} was made for another model; regenerate it with src/forecast/testdata/golden.py",
        golden_path.display()
    );
    let windows: Vec<Vec<[f64; N_FEATURES]>> = golden["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|w| {
            w.as_array()
                .expect("rows")
                .iter()
                .map(|r| {
                    let mut v = [0.0; N_FEATURES];
                    for (j, x) in r.as_array().expect("row").iter().enumerate() {
                        v[j] = x.as_f64().expect("number");
                    }
                    v
                })
                .collect()
        })
        .collect();
    let refs: Vec<&[[f64; N_FEATURES]]> = windows.iter().map(|w| &w[..]).collect();
    let got = session.forecast(&meta, &refs).expect("inference");
    for (g, want) in got
        .iter()
        .zip(golden["forecasts"].as_array().expect("forecasts"))
    {
        for (a, b) in g.iter().zip(want.as_array().expect("values")) {
            let b = b.as_f64().expect("number");
            assert!(
                (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                "rust {a} vs python {b}"
            );
        }
    }

    // The whole forecaster: full-history services run the LSTM, young ones fall back.
    let metrics = ForecastMetrics::default();
    let f = Forecaster::new(config, ROW_BUCKET_SECS, metrics.clone()).expect("forecaster");
    assert!(f.lstm_status().is_none(), "{:?}", f.lstm_status());
    let mut inputs: Vec<ForecastInput> = windows
        .iter()
        .map(|w| ForecastInput {
            window: w.clone(),
            ..input("full", 500, vec![50.0; 48], ForecastContext::default())
        })
        .collect();
    inputs.push(input(
        "young",
        10,
        vec![3.0; 10],
        ForecastContext::default(),
    ));
    let out = f.forecast_all(inputs).await;
    for (o, g) in out.iter().zip(&got) {
        assert_eq!(o.model_version, config::HALF_HOUR_ROUTE);
        assert_eq!(o.fallback_reason, None);
        assert_eq!(&o.values, g);
    }
    let young = out.last().expect("young");
    assert_eq!(young.model_version, BASELINE_VERSION);
    assert_eq!(young.fallback_reason, Some(FallbackReason::ShortHistory));
    assert_eq!(young.values, vec![3.0; 24]);
    let text = metrics_text(&metrics);
    assert!(
        text.contains("mcpwatch_forecast_runtime_available 1"),
        "{text}"
    );
    assert!(text.contains("mcpwatch_forecast_model_loaded 1"), "{text}");
    assert!(
        text.contains("mcpwatch_forecast_fallbacks_total{reason=\"short_history\"} 1"),
        "{text}"
    );
}

#[test]
fn eval_on_the_seed_csv_beats_seasonal_naive() {
    runtime_or_fail();
    let Some(csv) = seed_csv() else { return };
    let r = run_eval(&EvalOptions {
        csv,
        config: half_hour_config(),
        split: eval::EvalSplit::Test,
        grid: CheckGrid::EveryRow,
    })
    .expect("eval");
    assert_eq!(r.bucket_secs, ROW_BUCKET_SECS);
    assert_eq!(r.origins.len(), 12);
    assert_eq!(r.origins[0].origin, 1151);
    assert_eq!(r.origins[11].origin, 1415);
    assert_eq!(r.split_rows, (1007, 1151));
    assert!(
        (r.mae_seasonal_naive - 16.97).abs() < 0.01,
        "{}",
        r.mae_seasonal_naive
    );
    assert!(r.rel_mae() < 1.0, "{r}");
    let last = r.to_string().lines().last().expect("lines").to_string();
    assert!(
        last.starts_with("horizon=24 origins=12 mae_model="),
        "{last}"
    );
    assert!(
        last.contains(" mae_baseline=") && last.contains(" rel_mae="),
        "{last}"
    );
}

// ----- the continuous loop ---------------------------------------------------------------

/// One cycle forecasts every active service, leaves the forecast hot in the cache, stores it in
/// PostgreSQL with its model version, and a later cycle scores it once its buckets closed.
#[tokio::test]
async fn a_cycle_caches_stores_and_later_scores_forecasts() {
    use crate::cache::{kind, KeySpace, Tier};
    use crate::cache::{
        CacheBackend, CacheConfig, CacheMetrics, CacheWriter, HotCache, MemoryCache,
    };
    use crate::store::Partitions;

    let (pool, _) = crate::testing::fresh_store("forecast_cycle").await;
    let cache_config = CacheConfig {
        backend: CacheBackend::Memory,
        ..CacheConfig::default()
    };
    let cache_metrics = Arc::new(CacheMetrics::new());
    let cache: Arc<dyn HotCache> = Arc::new(MemoryCache::new(&cache_config, cache_metrics.clone()));
    let writer = CacheWriter::start(cache.clone(), &cache_config, cache_metrics).await;
    let values: Vec<f64> = (0..84)
        .map(|k| 50.0 + 10.0 * ((k % 48) as f64 / 8.0).sin())
        .collect();
    let engine = Arc::new(std::sync::Mutex::new(engine_with(&rows_of(&values[..60]))));
    let metrics = ForecastMetrics::default();
    let half_hour_no_runtime = ForecastConfig {
        model: repo().join(config::HALF_HOUR_MODEL),
        ..no_runtime_config()
    };
    let forecaster =
        Forecaster::new(half_hour_no_runtime, ROW_BUCKET_SECS, metrics.clone()).unwrap();
    let keys = KeySpace::new("test_cycle");
    let mut cycle = cycle::ForecastCycle::new(ForecastCycleArgs {
        forecaster,
        engine: engine.clone(),
        cache: writer.sender(),
        keys: keys.clone(),
        store: Some(ForecastStore::new(
            pool.clone(),
            Arc::new(Partitions::default()),
        )),
        bucket_width_secs: ROW_BUCKET_SECS,
        cadence: std::time::Duration::from_secs(60),
        shutdown: tokio_util::sync::CancellationToken::new(),
        clock: Arc::new(|| 1_763_690_000_000),
    });
    let first = cycle.once().await;
    assert_eq!((first.services, first.stored, first.matured), (1, 1, 0));
    // hot in the cache's forecast tier
    let key = keys.key(Tier::Forecast, "s", kind::FORECAST);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let cached = loop {
        if let Some(v) = cache.get(&key).await.unwrap() {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "forecast never reached the cache"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    let json: serde_json::Value = serde_json::from_slice(&cached).unwrap();
    assert_eq!(json["model_version"], BASELINE_VERSION);
    assert_eq!(json["values"].as_array().unwrap().len(), 24);
    // in PostgreSQL with its model version and why it fell back
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT model_version, fallback_reason, cardinality(\"values\") FROM forecasts",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), BASELINE_VERSION);
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("runtime_missing")
    );
    assert_eq!(row.get::<_, i32>(2), 24);

    // a day of buckets closes: the first forecast's 24 points mature, each exactly once
    engine
        .lock()
        .unwrap()
        .replay_buckets("s", &rows_of(&values)[60..]);
    let second = cycle.once().await;
    assert_eq!(second.matured, 24);
    let acc = cycle.tracker().accuracy();
    assert_eq!(acc.len(), 1);
    assert_eq!(acc[0].points, 24);
    let want_mae = {
        let first: Vec<f64> = serde_json::from_value(json["values"].clone()).unwrap();
        first
            .iter()
            .zip(&values[60..84])
            .map(|(f, a)| (f - a).abs())
            .sum::<f64>()
            / 24.0
    };
    // the engine keeps lagged targets at f32 precision, hence the tolerance
    assert!(
        (acc[0].mae - want_mae).abs() < 1e-4,
        "{} vs {want_mae}",
        acc[0].mae
    );
    assert_eq!(cycle.once().await.matured, 0, "nothing matures twice");
    writer.close().await;
}

// ----- the model per bucket width (the default model is for the default 1 h buckets) -----

/// Each shipped model is accepted at the bucket width it was trained on and refused at the
/// other: the default model at the daemon's default width (1 h), v2 at the demo's 30 minutes.
/// (Metadata only: no runtime library needed.)
#[test]
fn each_shipped_model_accepts_only_its_bucket_width() {
    let h1 = ModelMetadata::load(&repo().join(config::DEFAULT_MODEL)).expect("default model");
    assert_eq!(h1.name, config::DEFAULT_ROUTE);
    assert_eq!(h1.row_interval_minutes, Some(60));
    assert_eq!(default_width(), HOUR_BUCKET_SECS);
    h1.check_bucket_width(default_width())
        .expect("the default model fits the default buckets");
    assert!(h1.check_bucket_width(ROW_BUCKET_SECS).is_err());
    let v2 = ModelMetadata::load(&repo().join(config::HALF_HOUR_MODEL)).expect("v2 model");
    assert_eq!(v2.name, config::HALF_HOUR_ROUTE);
    assert_eq!(v2.row_interval_minutes, Some(30));
    v2.check_bucket_width(ROW_BUCKET_SECS)
        .expect("v2 fits 30-minute buckets");
    let e = v2
        .check_bucket_width(default_width())
        .unwrap_err()
        .to_string();
    assert!(e.contains("bucket_width_secs = 1800"), "{e}");
}

/// `eval forecast` picks the model for the grid, the grid for the model, and without either
/// the issue's must-show evaluation (v2 on 30-minute rows).
#[test]
fn eval_resolves_the_model_and_the_grid() {
    use eval::resolve_model_and_grid as resolve;
    let (m, g) = resolve(None, None).expect("defaults");
    assert_eq!(
        (m, g),
        (PathBuf::from(config::HALF_HOUR_MODEL), CheckGrid::EveryRow)
    );
    let (m, g) = resolve(None, Some(CheckGrid::Seed)).expect("grid only");
    assert_eq!(
        (m, g),
        (PathBuf::from(config::DEFAULT_MODEL), CheckGrid::Seed)
    );
    let h1 = repo().join(config::DEFAULT_MODEL);
    assert_eq!(
        resolve(Some(h1.clone()), None).expect("model only").1,
        CheckGrid::Seed
    );
    let v2 = repo().join(config::HALF_HOUR_MODEL);
    assert_eq!(
        resolve(Some(v2), None).expect("model only").1,
        CheckGrid::EveryRow
    );
    assert_eq!(
        resolve(Some(h1.clone()), Some(CheckGrid::EveryRow)).expect("both"),
        (h1, CheckGrid::EveryRow)
    );
    let d = tmp_dir("resolve");
    let mut v = meta_json(false);
    v["row_interval_minutes"] = serde_json::json!(15);
    let path = d.join("lstm_test_v1.json");
    std::fs::write(&path, v.to_string()).expect("write");
    let e = resolve(Some(path), None).unwrap_err().to_string();
    assert!(
        e.contains("row_interval_minutes") && e.contains("15"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Train/serve consistency on the hourly grid: at the default 1 h buckets, the window the
/// daemon (and the evaluation) feeds the model at origin t is rows t-24..t-1 of
/// `features export` (hourly), the default model's training data.
#[test]
fn engine_windows_equal_the_hourly_export_the_default_model_is_trained_on() {
    let Some(csv) = seed_csv() else { return };
    let d = tmp_dir("consistency-hours");
    let out = d.join("hours.csv");
    let n = crate::features::export_csv_with(&csv, &out, CheckGrid::Seed).expect("export");
    let text = std::fs::read_to_string(&out).expect("read");
    let export: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|x| x.parse::<f64>().expect("number"))
                .collect()
        })
        .collect();
    let buckets = seed_csv_hourly_buckets(&csv).expect("buckets");
    assert_eq!((buckets.len(), export.len()), (n, n));
    assert_eq!(n, 720, "the seed CSV spans 720 hours");
    for w in buckets.windows(2) {
        assert_eq!(w[1].0 - w[0].0, 3_600_000, "consecutive hours");
    }
    let config = FeaturesConfig {
        bucket_width_secs: HOUR_BUCKET_SECS,
        ..FeaturesConfig::default()
    };
    let mut engine =
        FeatureEngine::new(config, Arc::new(ManualClock::new(buckets[n - 1].0))).expect("engine");
    for t in [24usize, 100, 504, 576, 696] {
        engine.replay_buckets("s", &buckets[..t]);
        let i =
            ForecastInput::from_engine(&engine, "s", ForecastContext::default()).expect("input");
        assert_eq!(i.last_bucket_ms, buckets[t - 1].0);
        assert_input_matches_export(&i, &export, t);
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// Needs ONNX Runtime. The forecast section of config/default.toml, at the bucket width of the
/// same file, loads its model and runs the LSTM (no fallback) for a service with a full window.
#[tokio::test]
async fn the_default_config_runs_its_model_at_the_default_bucket_width() {
    use figment::providers::{Format, Serialized, Toml};
    runtime_or_fail();
    let file: crate::config::Config =
        figment::Figment::from(Serialized::defaults(crate::config::Config::default()))
            .merge(Toml::file(repo().join("config/default.toml")))
            .extract()
            .expect("config/default.toml parses");
    let width = file.features.bucket_width_secs;
    assert_eq!(width, HOUR_BUCKET_SECS);
    let mut fc = file.forecast.clone();
    fc.model = repo().join(&fc.model);
    let metrics = ForecastMetrics::default();
    let f = Forecaster::new(fc, width, metrics.clone()).expect("forecaster");
    assert!(f.lstm_status().is_none(), "{:?}", f.lstm_status());
    assert_eq!(
        f.model().expect("loaded").row_interval_minutes,
        Some(60),
        "the default model is the hourly one"
    );

    // A service with three days of hourly buckets (the seed's if present, else synthetic).
    let rows: Vec<(i64, RawRow)> = match seed_csv() {
        Some(csv) => seed_csv_hourly_buckets(&csv).expect("buckets")[..600].to_vec(),
        None => (0..72)
            .map(|k| {
                let v = 50.0 + 40.0 * (k as f64 * std::f64::consts::TAU / 24.0).sin();
                (
                    k * 3_600_000,
                    RawRow::from_values(v.round(), &[1.0; 14], None),
                )
            })
            .collect(),
    };
    let config = FeaturesConfig {
        bucket_width_secs: width,
        ..FeaturesConfig::default()
    };
    let mut engine = FeatureEngine::new(
        config,
        Arc::new(ManualClock::new(rows.last().expect("rows").0)),
    )
    .expect("engine");
    engine.replay_buckets("svc", &rows);
    let input =
        ForecastInput::from_engine(&engine, "svc", ForecastContext::default()).expect("input");
    let out = f.forecast_all(vec![input]).await;
    assert_eq!(out[0].fallback_reason, None, "{:?}", out[0]);
    assert_eq!(out[0].model_version, config::DEFAULT_ROUTE);
    assert_eq!(out[0].step_ms, 3_600_000);
    assert_eq!(out[0].values.len(), 24);
    assert!(out[0].values.iter().all(|v| v.is_finite() && *v >= 0.0));
    assert!(metrics_text(&metrics).contains("mcpwatch_forecast_model_loaded 1"));
}

/// Needs ONNX Runtime. `eval forecast --grid hours`: the default (hourly) model on the seed's
/// hourly buckets, scored in Rust, agrees with the Python evaluation of the same file on the
/// same hourly export (`training/evaluate.py`, figures recorded in the model's metadata).
#[test]
fn eval_on_the_hourly_grid_matches_the_python_evaluation() {
    runtime_or_fail();
    let Some(csv) = seed_csv() else { return };
    let r = run_eval(&EvalOptions {
        csv,
        config: default_config(),
        split: eval::EvalSplit::Test,
        grid: CheckGrid::Seed,
    })
    .expect("eval");
    assert_eq!(r.bucket_secs, HOUR_BUCKET_SECS);
    assert_eq!(r.rows, 720);
    assert_eq!(r.split_rows, (504, 576));
    let origins: Vec<usize> = r.origins.iter().map(|o| o.origin).collect();
    assert_eq!(origins, [576, 600, 624, 648, 672, 696]);
    assert_eq!(r.model_version, config::DEFAULT_ROUTE);

    // What train.py measured with onnxruntime on the exported CSV, from the metadata itself.
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join(config::DEFAULT_MODEL)).expect("metadata"),
    )
    .expect("json");
    let py = &meta["metrics"]["test"];
    assert_eq!(py["origins"].as_u64(), Some(6));
    let py_model = py["mae_model"].as_f64().expect("mae_model");
    let py_naive = py["mae_seasonal_naive"]
        .as_f64()
        .expect("mae_seasonal_naive");
    assert!(
        (r.mae_seasonal_naive - py_naive).abs() < 1e-9,
        "{} vs {py_naive}",
        r.mae_seasonal_naive
    );
    assert!(
        (r.mae_model - py_model).abs() < 1e-3,
        "rust {} vs python {py_model}",
        r.mae_model
    );
    let last = r.to_string().lines().last().expect("lines").to_string();
    assert!(
        last.starts_with("horizon=24 origins=6 mae_model="),
        "{last}"
    );
    assert!(
        last.contains(" mae_seasonal_naive=")
            && last.contains(" mae_baseline=")
            && last.contains(" rel_mae="),
        "{last}"
    );
}
