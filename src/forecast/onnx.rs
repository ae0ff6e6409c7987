//! ONNX Runtime, loaded at run time (`ort` with `load-dynamic`), and the LSTM sessions.
//!
//! The library is looked for at `forecast.ort_library` (which must then exist), else
//! `$ORT_DYLIB_PATH`, else next to the executable, else in `./lib` (where `make ort` puts it).
//! [`OnnxRuntime::load`] calls [`ort::init_from`] with the absolute path before any other `ort`
//! call, so a missing or incompatible library is a [`ForecastError::RuntimeMissing`] /
//! [`ForecastError::Runtime`] the forecaster turns into a baseline fallback — never a panic
//! inside `ort` (which would try a default library name on first use otherwise).
//!
//! ONNX Runtime allows one environment per process; it is created once and shared
//! ([`OnnxRuntime`] is a process-wide handle). Each inference worker owns one [`LstmSession`]
//! (`Session::run` takes `&mut self`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::metadata::{shape_text, ModelMetadata};
use super::ForecastError;
use crate::features::{FeatureVector, N_FEATURES, WINDOW_ROWS};

/// The environment variable `ort` itself reads, honoured in the same place of the search.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// Whether a file name looks like the ONNX Runtime shared library of this platform
/// (`libonnxruntime.so`, `libonnxruntime.so.1.31.1`, `libonnxruntime.dylib`, `onnxruntime.dll`).
fn is_ort_library_name(name: &str) -> bool {
    if cfg!(target_os = "windows") {
        name.eq_ignore_ascii_case("onnxruntime.dll")
    } else if cfg!(target_os = "macos") {
        name.starts_with("libonnxruntime") && name.ends_with(".dylib")
    } else {
        name == "libonnxruntime.so" || name.starts_with("libonnxruntime.so.")
    }
}

/// The ONNX Runtime library in `dir`, if any (the highest version when several are there).
fn find_in_dir(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_ort_library_name))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    // Version-aware enough for x.y.z suffixes of equal shape: longer (more specific) then
    // lexicographically greater.
    found.sort_by_key(|p| {
        let s = p.to_string_lossy().into_owned();
        (s.len(), s)
    });
    found.pop()
}

/// Finds the library: `configured`, else `$ORT_DYLIB_PATH`, else next to the executable, else
/// `./lib`. A configured or environment path must exist: naming a file that is not there is an
/// error rather than a reason to pick up some other library.
pub fn locate_library(configured: Option<&Path>) -> Result<PathBuf, ForecastError> {
    locate_library_with(
        configured,
        std::env::var_os(ORT_DYLIB_ENV).map(PathBuf::from),
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf)),
        Path::new("lib"),
    )
}

/// [`locate_library`] with its inputs explicit (tests).
pub fn locate_library_with(
    configured: Option<&Path>,
    env: Option<PathBuf>,
    exe_dir: Option<PathBuf>,
    local_lib: &Path,
) -> Result<PathBuf, ForecastError> {
    let explicit = |p: &Path, source: &'static str| {
        if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(ForecastError::RuntimeMissing {
                searched: vec![p.to_path_buf()],
                source_of_path: source,
            })
        }
    };
    if let Some(p) = configured {
        return explicit(p, "forecast.ort_library");
    }
    if let Some(p) = env.filter(|p| !p.as_os_str().is_empty()) {
        return explicit(&p, ORT_DYLIB_ENV);
    }
    let mut searched = Vec::new();
    for dir in exe_dir.into_iter().chain([local_lib.to_path_buf()]) {
        if let Some(p) = find_in_dir(&dir) {
            return Ok(p);
        }
        searched.push(dir);
    }
    Err(ForecastError::RuntimeMissing {
        searched,
        source_of_path: "search (executable's directory, ./lib)",
    })
}

/// The process's ONNX Runtime: the loaded library and its one environment.
#[derive(Clone)]
pub struct OnnxRuntime {
    /// Absolute path of the loaded library.
    library: PathBuf,
    /// The process's only ONNX Runtime environment; shared by every session (`ort` keeps it
    /// alive as long as one handle or session exists).
    env: ort::environment::Environment,
}

impl std::fmt::Debug for OnnxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxRuntime")
            .field("library", &self.library)
            .finish()
    }
}

/// The loaded runtime, if any. Guarded so two first loads cannot race; a failed load leaves it
/// empty so a later call (e.g. after `make ort`) can try again. Owned by this module.
static RUNTIME: Mutex<Option<OnnxRuntime>> = Mutex::new(None);

impl OnnxRuntime {
    /// Locates and loads the library (once per process; later calls return the loaded one).
    pub fn load(configured: Option<&Path>) -> Result<OnnxRuntime, ForecastError> {
        let path = locate_library(configured)?;
        let path = std::path::absolute(&path).unwrap_or(path);
        let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rt) = slot.as_ref() {
            if rt.library != path {
                tracing::warn!(
                    loaded = %rt.library.display(),
                    requested = %path.display(),
                    "ONNX Runtime is already loaded in this process; using the loaded library"
                );
            }
            return Ok(rt.clone());
        }
        let runtime_err = |problem: String| ForecastError::Runtime {
            library: path.clone(),
            problem,
        };
        let builder = ort::init_from(&path).map_err(|e| runtime_err(e.to_string()))?;
        let env = builder
            .with_name("mcpwatch")
            .with_telemetry(false)
            .build()
            .map_err(|e| runtime_err(e.to_string()))?;
        let rt = OnnxRuntime { library: path, env };
        tracing::info!(library = %rt.library.display(), "ONNX Runtime loaded");
        *slot = Some(rt.clone());
        Ok(rt)
    }

    /// The loaded library.
    pub fn library(&self) -> &Path {
        &self.library
    }
}

/// One ONNX session of the LSTM with its input scratch buffer. Owned by exactly one inference
/// worker at a time (`run` needs `&mut`); never shared between threads concurrently.
pub struct LstmSession {
    /// The ONNX Runtime session (holds the graph and its weights).
    session: Session,
    /// Input tensor name, read from the session.
    input_name: String,
    /// Output tensor name, read from the session.
    output_name: String,
    /// Forecast steps per window (the output's second dimension).
    horizon: usize,
    /// Scaled input of the current batch, reused across calls.
    scratch: Vec<f32>,
}

impl std::fmt::Debug for LstmSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LstmSession")
            .field("input", &self.input_name)
            .field("output", &self.output_name)
            .field("horizon", &self.horizon)
            .finish()
    }
}

/// Reads a session outlet's tensor shape (`-1` for symbolic dimensions).
fn outlet_shape(o: &ort::value::Outlet) -> Option<Vec<i64>> {
    let ty = o.dtype();
    if ty.tensor_type() != Some(ort::value::TensorElementType::Float32) {
        return None;
    }
    ty.tensor_shape().map(|s| s.to_vec())
}

fn shape_ok(got: &[i64], want: &[Option<usize>]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| match w {
            None => true,
            Some(n) => *g == *n as i64 || *g < 0,
        })
}

impl LstmSession {
    /// Opens the graph the metadata names and checks its interface against the metadata and
    /// the engine: one float32 input `[batch, 24, 82]`, one float32 output `[batch, horizon]`,
    /// named as the metadata records them.
    pub fn open(
        runtime: &OnnxRuntime,
        meta: &ModelMetadata,
        intra_threads: usize,
    ) -> Result<LstmSession, ForecastError> {
        let path = &meta.onnx_path;
        if !path.is_file() {
            return Err(ForecastError::ModelFile {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("named by onnx.file in {}", meta.path.display()),
                ),
            });
        }
        let graph_err = |field: &str, problem: String| ForecastError::Graph {
            path: path.clone(),
            field: field.to_string(),
            problem,
        };
        // ort's builder error is large; these closures only pass it through to one map_err
        #[allow(clippy::result_large_err)]
        let session = Session::builder(&runtime.env)
            .and_then(|b| {
                b.with_optimization_level(GraphOptimizationLevel::Level3)
                    .and_then(|b| b.with_intra_threads(intra_threads))
                    .and_then(|b| b.with_inter_threads(1))
                    .map_err(ort::Error::from)
            })
            .and_then(|mut b| b.commit_from_file(path))
            .map_err(|e| graph_err("(file)", format!("ONNX Runtime cannot load it: {e}")))?;

        let want_in = [None, Some(WINDOW_ROWS), Some(N_FEATURES)];
        let want_out = [None, Some(meta.horizon)];
        let [input] = session.inputs() else {
            return Err(graph_err(
                "inputs",
                format!(
                    "has {} inputs, expected one {}",
                    session.inputs().len(),
                    shape_text(&want_in)
                ),
            ));
        };
        let [output] = session.outputs() else {
            return Err(graph_err(
                "outputs",
                format!(
                    "has {} outputs, expected one {}",
                    session.outputs().len(),
                    shape_text(&want_out)
                ),
            ));
        };
        match outlet_shape(input) {
            Some(s) if shape_ok(&s, &want_in) => {}
            other => {
                return Err(graph_err(
                    &format!("input `{}`", input.name()),
                    format!(
                        "is {other:?} (float32 shape), expected float32 {}",
                        shape_text(&want_in)
                    ),
                ))
            }
        }
        match outlet_shape(output) {
            Some(s) if shape_ok(&s, &want_out) => {}
            other => {
                return Err(graph_err(
                    &format!("output `{}`", output.name()),
                    format!(
                        "is {other:?} (float32 shape), expected float32 {}",
                        shape_text(&want_out)
                    ),
                ))
            }
        }
        for (field, recorded, actual) in [
            (
                "onnx.inputs[0].name",
                &meta.onnx.inputs[0].name,
                input.name(),
            ),
            (
                "onnx.outputs[0].name",
                &meta.onnx.outputs[0].name,
                output.name(),
            ),
        ] {
            if recorded != actual {
                return Err(ForecastError::Metadata {
                    path: meta.path.clone(),
                    field: field.to_string(),
                    problem: format!(
                        "says `{recorded}`, the graph {} has `{actual}`",
                        path.display()
                    ),
                    fix: "ship the .json and .onnx written by the same training run".to_string(),
                });
            }
        }
        Ok(LstmSession {
            input_name: input.name().to_string(),
            output_name: output.name().to_string(),
            horizon: meta.horizon,
            session,
            scratch: Vec::new(),
        })
    }

    /// Runs the model on `windows` (each [`WINDOW_ROWS`] feature vectors, oldest first) in one
    /// call and returns, per window, `horizon` forecasts in the target's original units —
    /// steps 1–9 of the metadata's recipe.
    pub fn forecast(
        &mut self,
        meta: &ModelMetadata,
        windows: &[&[FeatureVector]],
    ) -> Result<Vec<Vec<f64>>, ForecastError> {
        let b = windows.len();
        if b == 0 {
            return Ok(Vec::new());
        }
        let per = WINDOW_ROWS * N_FEATURES;
        self.scratch.resize(b * per, 0.0);
        for (i, w) in windows.iter().enumerate() {
            if w.len() != WINDOW_ROWS {
                return Err(ForecastError::Inference(format!(
                    "window {i} has {} rows, the model needs {WINDOW_ROWS}",
                    w.len()
                )));
            }
            meta.scale_window(w, &mut self.scratch[i * per..(i + 1) * per]);
        }
        let raw = self.run_scaled(b)?;
        Ok(raw
            .chunks_exact(self.horizon)
            .map(|c| c.iter().map(|&v| meta.inverse_target(v)).collect())
            .collect())
    }

    /// One session call on the first `b` windows of the scratch buffer; returns the raw
    /// (scaled-space) outputs, `b × horizon`, row-major.
    fn run_scaled(&mut self, b: usize) -> Result<Vec<f32>, ForecastError> {
        let err = |e: &dyn std::fmt::Display| ForecastError::Inference(e.to_string());
        let data = &self.scratch[..b * WINDOW_ROWS * N_FEATURES];
        let view = ndarray::ArrayView3::from_shape((b, WINDOW_ROWS, N_FEATURES), data)
            .map_err(|e| err(&e))?;
        let tensor = TensorRef::from_array_view(view).map_err(|e| err(&e))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| err(&e))?;
        let out = outputs
            .get(self.output_name.as_str())
            .ok_or_else(|| ForecastError::Inference(format!("no output `{}`", self.output_name)))?
            .try_extract_array::<f32>()
            .map_err(|e| err(&e))?;
        if out.shape() != [b, self.horizon] {
            return Err(ForecastError::Inference(format!(
                "output shape {:?}, expected [{b}, {}]",
                out.shape(),
                self.horizon
            )));
        }
        Ok(out.iter().copied().collect())
    }
}
