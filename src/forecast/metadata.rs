//! The model's metadata JSON (written by `training/train.py`) and the preprocessing it
//! prescribes, applied exactly as its `inference.steps` say:
//! clip → scale → model → inverse target scale → expm1 (if `use_log_transform`) → max(`output_min`).
//!
//! Loading checks the file against the engine: the 82 `feature_names` must be
//! [`FEATURE_NAMES`] in that order (the model reads columns by position), every per-feature
//! vector must have 82 finite entries, scales must be non-zero, and the window length must be the
//! engine's [`WINDOW_ROWS`]. Each failure names the file, the field and the fix.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ForecastError;
use crate::features::{FeatureVector, FEATURE_NAMES, N_FEATURES, WINDOW_ROWS};

/// One tensor of the graph's interface as the metadata records it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TensorSpec {
    /// Tensor name in the graph.
    pub name: String,
    /// Element type (`float32`).
    #[serde(default)]
    pub dtype: String,
    /// Dimensions; a string (e.g. `"batch"`) is a symbolic dimension.
    #[serde(default)]
    pub shape: Vec<serde_json::Value>,
}

/// The `onnx` object of the metadata.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OnnxSpec {
    /// The graph's file name, in the metadata's directory.
    pub file: String,
    /// Graph inputs (one: `[batch, 24, 82]`).
    pub inputs: Vec<TensorSpec>,
    /// Graph outputs (one: `[batch, horizon]`).
    pub outputs: Vec<TensorSpec>,
    /// SHA-256 of the graph file, when recorded.
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct VecScaler {
    center: Vec<f64>,
    scale: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ScalarScaler {
    center: f64,
    scale: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Bounds {
    lower: Vec<f64>,
    upper: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ClipBounds {
    features: Bounds,
}

/// The fields of the metadata JSON the daemon uses (others are kept in the file for people).
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct RawMetadata {
    name: String,
    #[serde(default)]
    target: Option<String>,
    sequence_length: usize,
    horizon: usize,
    #[serde(default)]
    row_interval_minutes: Option<u32>,
    feature_names: Vec<String>,
    feature_scaler: VecScaler,
    target_scaler: ScalarScaler,
    use_log_transform: bool,
    clip_bounds: ClipBounds,
    #[serde(default)]
    output_min: f64,
    onnx: OnnxSpec,
}

/// A validated model description: everything inference needs besides the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMetadata {
    /// The metadata file it was read from.
    pub path: PathBuf,
    /// The model's name (`lstm_total_events_h1`).
    pub name: String,
    /// What it forecasts (`total_events`).
    pub target: String,
    /// Rows per input window (24).
    pub sequence_length: usize,
    /// Steps forecast (24).
    pub horizon: usize,
    /// Minutes between two rows the model was trained on (60 for `lstm_total_events_h1`, 30 for
    /// `…_v2`, trained on the seed CSV's rows), if recorded. The engine's bucket width must match.
    pub row_interval_minutes: Option<u32>,
    /// Per-feature winsorising bounds (step 1).
    pub feature_lower: [f64; N_FEATURES],
    /// Per-feature winsorising bounds (step 1).
    pub feature_upper: [f64; N_FEATURES],
    /// Per-feature scaler center (step 2): `(x - center) / scale`.
    pub feature_center: [f64; N_FEATURES],
    /// Per-feature scaler scale (step 2), never 0.
    pub feature_scale: [f64; N_FEATURES],
    /// Target scaler (inverse: `out * scale + center`).
    pub target_center: f64,
    /// Target scaler scale.
    pub target_scale: f64,
    /// Whether the scaled target is `log1p(y)` (inverse: `expm1`).
    pub use_log_transform: bool,
    /// Floor of every forecast (0: no negative event counts).
    pub output_min: f64,
    /// The graph's interface as recorded.
    pub onnx: OnnxSpec,
    /// The graph file (resolved next to the metadata).
    pub onnx_path: PathBuf,
}

fn invalid(
    path: &Path,
    field: &str,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ForecastError {
    ForecastError::Metadata {
        path: path.to_path_buf(),
        field: field.to_string(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

const RETRAIN: &str = "retrain with training/train.py on a CSV from `mcpwatch features export` (hourly buckets; `--grid rows` for 30-minute ones) with the same 82 columns in the same order, and ship the new .json with its .onnx";

fn vec82(
    path: &Path,
    field: &str,
    v: &[f64],
    nonzero: bool,
) -> Result<[f64; N_FEATURES], ForecastError> {
    if v.len() != N_FEATURES {
        return Err(invalid(
            path,
            field,
            format!(
                "has {} entries, the engine has {N_FEATURES} features",
                v.len()
            ),
            RETRAIN,
        ));
    }
    if let Some((i, x)) = v
        .iter()
        .enumerate()
        .find(|(_, x)| !x.is_finite() || (nonzero && **x == 0.0))
    {
        return Err(invalid(
            path,
            &format!("{field}[{i}]"),
            format!("is {x} (feature `{}`)", FEATURE_NAMES[i]),
            "every entry must be finite (and scales non-zero); regenerate the metadata with training/train.py",
        ));
    }
    let mut out = [0.0; N_FEATURES];
    out.copy_from_slice(v);
    Ok(out)
}

impl ModelMetadata {
    /// Reads and validates a metadata JSON file.
    pub fn load(path: &Path) -> Result<ModelMetadata, ForecastError> {
        let text = std::fs::read_to_string(path).map_err(|source| ForecastError::ModelFile {
            path: path.to_path_buf(),
            source,
        })?;
        ModelMetadata::parse(path, &text)
    }

    /// Parses and validates metadata text; `path` names it in errors and locates the graph.
    pub fn parse(path: &Path, text: &str) -> Result<ModelMetadata, ForecastError> {
        let raw: RawMetadata = serde_json::from_str(text).map_err(|e| {
            invalid(
                path,
                "(document)",
                format!("is not model metadata: {e}"),
                "use the .json that training/train.py wrote next to the .onnx file",
            )
        })?;
        if raw.feature_names.len() != N_FEATURES {
            return Err(invalid(
                path,
                "feature_names",
                format!(
                    "lists {} features, the engine computes {N_FEATURES}",
                    raw.feature_names.len()
                ),
                RETRAIN,
            ));
        }
        if let Some((i, (m, e))) = raw
            .feature_names
            .iter()
            .zip(FEATURE_NAMES.iter())
            .enumerate()
            .find(|(_, (m, e))| m.as_str() != **e)
        {
            return Err(invalid(
                path,
                &format!("feature_names[{i}]"),
                format!("is `{m}`, the engine's feature {i} is `{e}` (the model reads columns by position)"),
                RETRAIN,
            ));
        }
        if raw.sequence_length != WINDOW_ROWS {
            return Err(invalid(
                path,
                "sequence_length",
                format!(
                    "is {}, the engine keeps {WINDOW_ROWS}-row windows",
                    raw.sequence_length
                ),
                "retrain with training/train.py (sequence length 24)",
            ));
        }
        if !(1..=10_000).contains(&raw.horizon) {
            return Err(invalid(
                path,
                "horizon",
                format!("is {}", raw.horizon),
                "regenerate the metadata with training/train.py (horizon 24)",
            ));
        }
        let feature_lower = vec82(
            path,
            "clip_bounds.features.lower",
            &raw.clip_bounds.features.lower,
            false,
        )?;
        let feature_upper = vec82(
            path,
            "clip_bounds.features.upper",
            &raw.clip_bounds.features.upper,
            false,
        )?;
        if let Some(i) = (0..N_FEATURES).find(|&i| feature_lower[i] > feature_upper[i]) {
            return Err(invalid(
                path,
                &format!("clip_bounds.features.lower[{i}]"),
                format!(
                    "{} is above the upper bound {} (feature `{}`)",
                    feature_lower[i], feature_upper[i], FEATURE_NAMES[i]
                ),
                "regenerate the metadata with training/train.py",
            ));
        }
        let feature_center = vec82(
            path,
            "feature_scaler.center",
            &raw.feature_scaler.center,
            false,
        )?;
        let feature_scale = vec82(
            path,
            "feature_scaler.scale",
            &raw.feature_scaler.scale,
            true,
        )?;
        let ts = raw.target_scaler;
        if !ts.center.is_finite() || !ts.scale.is_finite() || ts.scale == 0.0 {
            return Err(invalid(
                path,
                "target_scaler",
                format!(
                    "center {} / scale {} must be finite, scale non-zero",
                    ts.center, ts.scale
                ),
                "regenerate the metadata with training/train.py",
            ));
        }
        if !raw.output_min.is_finite() {
            return Err(invalid(path, "output_min", "is not finite", "use 0"));
        }
        check_spec(
            path,
            "onnx.inputs",
            &raw.onnx.inputs,
            &[None, Some(WINDOW_ROWS), Some(N_FEATURES)],
        )?;
        check_spec(
            path,
            "onnx.outputs",
            &raw.onnx.outputs,
            &[None, Some(raw.horizon)],
        )?;
        if raw.onnx.file.is_empty() || raw.onnx.file.contains(['/', '\\']) {
            return Err(invalid(
                path,
                "onnx.file",
                format!("`{}` is not a file name", raw.onnx.file),
                "name the .onnx file that sits next to the metadata",
            ));
        }
        let onnx_path = path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(&raw.onnx.file);
        Ok(ModelMetadata {
            path: path.to_path_buf(),
            name: raw.name,
            target: raw.target.unwrap_or_else(|| "total_events".into()),
            sequence_length: raw.sequence_length,
            horizon: raw.horizon,
            row_interval_minutes: raw.row_interval_minutes,
            feature_lower,
            feature_upper,
            feature_center,
            feature_scale,
            target_center: ts.center,
            target_scale: ts.scale,
            use_log_transform: raw.use_log_transform,
            output_min: raw.output_min,
            onnx: raw.onnx,
            onnx_path,
        })
    }

    /// Checks that the engine's buckets have the width the model was trained on.
    pub fn check_bucket_width(&self, bucket_width_secs: u64) -> Result<(), ForecastError> {
        match self.row_interval_minutes {
            Some(m) if u64::from(m) * 60 != bucket_width_secs => Err(invalid(
                &self.path,
                "row_interval_minutes",
                format!(
                    "the model was trained on {m}-minute rows but features.bucket_width_secs is {bucket_width_secs}"
                ),
                format!(
                    "set features.bucket_width_secs = {} or retrain on a feature export with {bucket_width_secs}-second buckets",
                    u64::from(m) * 60
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Steps 1–4 of the recipe for one window: forward-fill non-finite values along time (then
    /// 0), clip to the bounds, scale, and write `rows × 82` `f32`s (row-major) into `out`.
    /// `window` holds the last [`WINDOW_ROWS`] vectors, oldest first.
    pub fn scale_window(&self, window: &[FeatureVector], out: &mut [f32]) {
        debug_assert_eq!(out.len(), window.len() * N_FEATURES);
        let mut last = [0.0f64; N_FEATURES];
        for (r, row) in window.iter().enumerate() {
            let dst = &mut out[r * N_FEATURES..(r + 1) * N_FEATURES];
            for j in 0..N_FEATURES {
                let raw = row[j];
                let x = if raw.is_finite() { raw } else { last[j] };
                last[j] = x;
                let c = x.clamp(self.feature_lower[j], self.feature_upper[j]);
                dst[j] = ((c - self.feature_center[j]) / self.feature_scale[j]) as f32;
            }
        }
    }

    /// Steps 7–9 for one model output value: inverse target scale, `expm1` if the target was
    /// log-transformed, floor at `output_min`. The result is in the target's original units.
    pub fn inverse_target(&self, out: f32) -> f64 {
        let mut y = f64::from(out) * self.target_scale + self.target_center;
        if self.use_log_transform {
            y = y.exp_m1();
        }
        // NaN (a broken graph) becomes the floor rather than leaking into plans.
        if y.is_nan() {
            return self.output_min;
        }
        y.max(self.output_min)
    }
}

/// Checks a recorded tensor list: one tensor, float32, the given dims (`None`: any, e.g. the
/// batch dimension).
fn check_spec(
    path: &Path,
    field: &str,
    specs: &[TensorSpec],
    dims: &[Option<usize>],
) -> Result<(), ForecastError> {
    let want = shape_text(dims);
    let [spec] = specs else {
        return Err(invalid(
            path,
            field,
            format!("lists {} tensors, the forecaster feeds one {want} tensor", specs.len()),
            "export the model with one input [batch, 24, 82] and one output [batch, horizon] (training/onnx_tools.py)",
        ));
    };
    if !spec.dtype.is_empty() && spec.dtype != "float32" {
        return Err(invalid(
            path,
            &format!("{field}[0].dtype"),
            format!("is {}, the forecaster uses float32", spec.dtype),
            "export the model with float32 tensors",
        ));
    }
    let ok = spec.shape.len() == dims.len()
        && spec.shape.iter().zip(dims).all(|(v, d)| match d {
            None => true,
            Some(n) => v.as_u64() == Some(*n as u64),
        });
    if !ok {
        return Err(invalid(
            path,
            &format!("{field}[0].shape"),
            format!("is {:?}, expected {want}", spec.shape),
            "export the model with one input [batch, 24, 82] and one output [batch, horizon] (training/onnx_tools.py)",
        ));
    }
    Ok(())
}

/// `[batch, 24, 82]`.
pub(crate) fn shape_text(dims: &[Option<usize>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or_else(|| "batch".to_string(), |n| n.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}
