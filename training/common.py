"""Shared pieces of the mcpwatch training pipeline.

Everything that both `train.py` and `evaluate.py` need lives here: reading the CSV, the
chronological split, the preprocessing (fit on the training split only), the windowing, the
rolling-origin evaluation protocol and the Keras model definition.

The preprocessing is deliberately written in plain numpy from the parameters that end up in the
metadata JSON, so that the same code path documents (and tests) what the Rust daemon must do.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SEQUENCE_LENGTH = 24
HORIZON = 24
ROW_MINUTES = 30  # default row interval: the seed CSV (and `features export --grid rows`) is half-hourly
SEASON = 48  # rows per day at the default row interval
TIME_COLUMN = "hour_offset"
TARGET = "total_events"
EXPECTED_FEATURE_COUNT = 82
CLIP_IQR_MULTIPLIER = 3.0
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)


# --------------------------------------------------------------------------------------------
# data


@dataclass
class Dataset:
    path: str
    sha256: str
    rows: int
    feature_names: list[str]
    features: np.ndarray  # (rows, 82) float64, forward-filled then 0, NOT clipped
    target: np.ndarray  # (rows,) float64, forward-filled then 0, NOT clipped (original units)
    train_end: int  # exclusive; train rows [0, train_end)
    val_end: int  # exclusive; validation rows [train_end, val_end), test rows [val_end, rows)
    row_minutes: int = ROW_MINUTES  # minutes between two rows (the engine's bucket width)
    season: int = SEASON  # rows per day: seasonal naive looks this many rows back


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def season_rows(row_minutes: int) -> int:
    """Rows per day for a row interval: 48 for 30-minute rows, 24 for hourly rows."""
    if row_minutes <= 0 or 1440 % row_minutes:
        raise SystemExit(f"row interval {row_minutes} min does not divide a day")
    return 1440 // row_minutes


def configure_threads() -> None:
    """TensorFlow's intra/inter-op thread pools from the environment (TF_NUM_INTRAOP_THREADS,
    TF_NUM_INTEROP_THREADS; TensorFlow reads them too). Unset: TensorFlow's default (all cores).
    Must run before TensorFlow executes anything."""
    import tensorflow as tf

    for var, setter in (("TF_NUM_INTRAOP_THREADS", tf.config.threading.set_intra_op_parallelism_threads),
                        ("TF_NUM_INTEROP_THREADS", tf.config.threading.set_inter_op_parallelism_threads)):
        v = os.environ.get(var, "").strip()
        if v:
            setter(int(v))


def split_bounds(rows: int) -> tuple[int, int]:
    """Chronological 70/10/20 split: floor(0.7 rows), floor(0.8 rows), in integer arithmetic as the
    Rust evaluation does (int(720 * 0.7) would be 503 through float rounding). For 1439 rows: train
    0-1006, val 1007-1150, test 1151-1438; for 720 hourly rows: train 0-503, val 504-575, test
    576-719."""
    train_end = rows * 7 // 10
    val_end = rows * 8 // 10
    assert SPLIT_FRACTIONS == (0.7, 0.1, 0.2)
    return train_end, val_end


def load_csv(path: str, row_minutes: int = ROW_MINUTES) -> Dataset:
    df = pd.read_csv(path)
    cols = list(df.columns)
    if cols[:2] != [TIME_COLUMN, TARGET]:
        raise SystemExit(
            f"{path}: the first two columns must be `{TIME_COLUMN},{TARGET}`, found {cols[:2]}"
        )
    feature_names = cols[2:]
    if len(feature_names) != EXPECTED_FEATURE_COUNT:
        raise SystemExit(
            f"{path}: expected {EXPECTED_FEATURE_COUNT} feature columns after `{TARGET}`, "
            f"found {len(feature_names)}"
        )
    # Forward-fill then 0 (the seed's missing-value rule), in row order.
    df = df.apply(pd.to_numeric, errors="coerce")
    df = df.replace([np.inf, -np.inf], np.nan).ffill().fillna(0.0)
    rows = len(df)
    train_end, val_end = split_bounds(rows)
    return Dataset(
        path=path,
        sha256=sha256_of(path),
        rows=rows,
        feature_names=feature_names,
        features=df[feature_names].to_numpy(dtype=np.float64),
        target=df[TARGET].to_numpy(dtype=np.float64),
        train_end=train_end,
        val_end=val_end,
        row_minutes=row_minutes,
        season=season_rows(row_minutes),
    )


# --------------------------------------------------------------------------------------------
# preprocessing


@dataclass
class Preprocessor:
    """All fitted parameters. Order of application at inference time (per feature j):

        x = clip(x, feature_lower[j], feature_upper[j])
        x = (x - feature_center[j]) / feature_scale[j]

    and for the model output (24 values, scaled target space):

        y = out * target_scale + target_center
        y = expm1(y) if use_log_transform
        y = max(y, output_min)
    """

    feature_lower: np.ndarray
    feature_upper: np.ndarray
    feature_center: np.ndarray
    feature_scale: np.ndarray
    target_lower: float
    target_upper: float
    target_center: float
    target_scale: float
    use_log_transform: bool
    output_min: float = 0.0

    # ---- fitting (training rows only) ----
    @staticmethod
    def fit(features: np.ndarray, target: np.ndarray, use_log_transform: bool) -> "Preprocessor":
        f_lo, f_hi = iqr_bounds(features)
        t_lo, t_hi = iqr_bounds(target[:, None])
        fc = np.clip(features, f_lo, f_hi)
        f_center, f_scale = robust_center_scale(fc)
        tt = transform_target_values(np.clip(target, t_lo[0], t_hi[0]), use_log_transform)
        t_center, t_scale = robust_center_scale(tt[:, None])
        return Preprocessor(
            feature_lower=f_lo,
            feature_upper=f_hi,
            feature_center=f_center,
            feature_scale=f_scale,
            target_lower=float(t_lo[0]),
            target_upper=float(t_hi[0]),
            target_center=float(t_center[0]),
            target_scale=float(t_scale[0]),
            use_log_transform=use_log_transform,
        )

    # ---- application ----
    def transform_features(self, features: np.ndarray) -> np.ndarray:
        x = np.clip(features, self.feature_lower, self.feature_upper)
        return ((x - self.feature_center) / self.feature_scale).astype(np.float32)

    def transform_target(self, target: np.ndarray) -> np.ndarray:
        y = np.clip(target, self.target_lower, self.target_upper)
        y = transform_target_values(y, self.use_log_transform)
        return ((y - self.target_center) / self.target_scale).astype(np.float32)

    def inverse_target(self, out: np.ndarray) -> np.ndarray:
        y = np.asarray(out, dtype=np.float64) * self.target_scale + self.target_center
        if self.use_log_transform:
            y = np.expm1(y)
        return np.maximum(y, self.output_min)

    # ---- (de)serialisation into the metadata JSON ----
    def to_json(self, feature_names: list[str]) -> dict:
        return {
            "feature_scaler": {
                "kind": "robust",
                "formula": "(x - center) / scale",
                "center": [float(v) for v in self.feature_center],
                "scale": [float(v) for v in self.feature_scale],
            },
            "target_scaler": {
                "kind": "robust",
                "formula": "(t - center) / scale, where t = log1p(max(y, 0)) if use_log_transform else y",
                "center": self.target_center,
                "scale": self.target_scale,
            },
            "use_log_transform": self.use_log_transform,
            "clip_bounds": {
                "rule": f"[Q1 - {CLIP_IQR_MULTIPLIER}*IQR, Q3 + {CLIP_IQR_MULTIPLIER}*IQR] of the training split",
                "features": {
                    "lower": [float(v) for v in self.feature_lower],
                    "upper": [float(v) for v in self.feature_upper],
                },
                "target": {"lower": self.target_lower, "upper": self.target_upper},
            },
            "output_min": self.output_min,
        }

    @staticmethod
    def from_json(meta: dict) -> "Preprocessor":
        cb = meta["clip_bounds"]
        return Preprocessor(
            feature_lower=np.array(cb["features"]["lower"], dtype=np.float64),
            feature_upper=np.array(cb["features"]["upper"], dtype=np.float64),
            feature_center=np.array(meta["feature_scaler"]["center"], dtype=np.float64),
            feature_scale=np.array(meta["feature_scaler"]["scale"], dtype=np.float64),
            target_lower=float(cb["target"]["lower"]),
            target_upper=float(cb["target"]["upper"]),
            target_center=float(meta["target_scaler"]["center"]),
            target_scale=float(meta["target_scaler"]["scale"]),
            use_log_transform=bool(meta["use_log_transform"]),
            output_min=float(meta.get("output_min", 0.0)),
        )


def iqr_bounds(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column winsorising bounds Q1 - 3*IQR, Q3 + 3*IQR (linear-interpolated quantiles)."""
    q1 = np.quantile(x, 0.25, axis=0)
    q3 = np.quantile(x, 0.75, axis=0)
    iqr = q3 - q1
    return q1 - CLIP_IQR_MULTIPLIER * iqr, q3 + CLIP_IQR_MULTIPLIER * iqr


def robust_center_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RobustScaler-style: center = median, scale = Q3 - Q1 (1.0 where the IQR is 0)."""
    center = np.median(x, axis=0)
    scale = np.quantile(x, 0.75, axis=0) - np.quantile(x, 0.25, axis=0)
    scale = np.where(scale == 0.0, 1.0, scale)
    return center, scale


def transform_target_values(y: np.ndarray, use_log: bool) -> np.ndarray:
    return np.log1p(np.maximum(y, 0.0)) if use_log else y


# --------------------------------------------------------------------------------------------
# windows and the evaluation protocol


def windows(x: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """Input windows: for origin t, rows t-24 .. t-1 (oldest first). Shape (n, 24, F)."""
    idx = origins[:, None] + np.arange(-SEQUENCE_LENGTH, 0)[None, :]
    return x[idx]


def targets(y: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """Targets: for origin t, rows t .. t+23. Shape (n, 24)."""
    idx = origins[:, None] + np.arange(HORIZON)[None, :]
    return y[idx]


def protocol_origins(start: int, end: int) -> np.ndarray:
    """Rolling origins every 24 rows: t = start + 24k while t + 23 < end (end exclusive).
    Test split of the seed data: t = 1151 + 24k, k = 0..11 (last target row 1438)."""
    return np.arange(start, end - HORIZON + 1, HORIZON)


def all_origins(start: int, end: int, first_allowed: int) -> np.ndarray:
    """Every origin whose 24 targets lie in [start, end) and whose input starts at >= first_allowed."""
    lo = max(start, first_allowed + SEQUENCE_LENGTH)
    return np.arange(lo, end - HORIZON + 1)


def seasonal_naive(y: np.ndarray, origins: np.ndarray, season: int = SEASON) -> np.ndarray:
    """Prediction for row r is y[r - season] (one day earlier: 48 half-hour rows, 24 hourly rows)."""
    return targets(y, origins - season)


def protocol_scores(pred: np.ndarray, y: np.ndarray, origins: np.ndarray, season: int = SEASON) -> dict:
    truth = targets(y, origins)
    sn = seasonal_naive(y, origins, season)
    mae_model = float(np.mean(np.abs(pred - truth)))
    mae_sn = float(np.mean(np.abs(sn - truth)))
    return {
        "origins": int(len(origins)),
        "first_origin": int(origins[0]),
        "last_target_row": int(origins[-1] + HORIZON - 1),
        "mae_model": mae_model,
        "mae_seasonal_naive": mae_sn,
        "rel_mae": mae_model / mae_sn,
        "mae_per_origin": [float(v) for v in np.mean(np.abs(pred - truth), axis=1)],
    }


# --------------------------------------------------------------------------------------------
# model


@dataclass
class HParams:
    arch: str = "seasonal_residual"  # or "plain"
    units: int = 32
    layers: int = 1
    dropout: float = 0.2
    recurrent_dropout: float = 0.0
    l2: float = 1e-4
    loss: str = "huber"
    huber_delta: float = 1.0
    use_log_transform: bool = True
    learning_rate: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 150
    patience: int = 20
    members: int = 5
    warmup_rows: int = SEASON  # first origin's input window starts after one day of history
    # seasonal_residual: the feature whose value at input row k is the target one day before
    # forecast row k. A feature name (read at input row k), or "total_events": the target AT input
    # row k, rebuilt from lag1_events / diff_1h (see make_seasonal_reference_layer); that is the
    # one-day-earlier value when a day is 24 rows (hourly rows).
    seasonal_reference_feature: str = "lag12_events"
    # blend_residual only: features whose sum at the last input row is the latest observed target
    persistence_features: tuple = ("add_events", "remove_events", "update_events")
    level_feature: str = "ma6_events"
    extra: dict = field(default_factory=dict)


def set_seeds(seed: int) -> None:
    import keras
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


SAME_ROW_TARGET = "total_events"


def seasonal_reference_features(reference: str) -> list[str]:
    """The input features the in-graph seasonal reference reads, by name."""
    return ["lag1_events", "diff_1h"] if reference == SAME_ROW_TARGET else [reference]


def make_seasonal_reference_layer(pre: Preprocessor, feature_names: list[str], reference: str):
    """A layer that rebuilds the seasonal-naive forecast from the scaled input window.

    Output step k forecasts row t+k from input rows t-24..t-1; the reference for it is a value of
    the target one day before row t+k, read from input row k:
      - a feature name, e.g. `lag12_events` in the seed's columns (12 h = 24 half-hour rows back
        from input row t-24+k, i.e. row t+k-48) or the engine's `lag24_events` in 30-minute rows
        (24 rows back: the same row t+k-48);
      - `total_events` (SAME_ROW_TARGET), for hourly rows where one day = 24 rows: the target AT
        input row t-24+k. The target is not an input feature, so it is rebuilt exactly from the
        engine's definitions: for k < 23, input row k+1's `lag1_events`; for k = 23, the last
        row's `lag1_events + diff_1h` (diff_1h = total_events - lag1_events).
    The layer undoes the feature scaling (so it sees the feature-clipped values), applies the
    target's clip / log1p / scaling and returns that reference in the model's output space, so the
    LSTM only has to learn a correction. All constants are baked into the graph; the ONNX input
    stays the 82 scaled features.
    """
    import keras
    from keras import ops

    idx = [feature_names.index(n) for n in seasonal_reference_features(reference)]
    fc = [float(pre.feature_center[j]) for j in idx]
    fs = [float(pre.feature_scale[j]) for j in idx]
    t_lo, t_hi = float(pre.target_lower), float(pre.target_upper)
    t_center, t_scale = float(pre.target_center), float(pre.target_scale)
    use_log = bool(pre.use_log_transform)
    same_row = reference == SAME_ROW_TARGET

    class SeasonalReference(keras.layers.Layer):
        def call(self, x):
            v = x[:, :, idx[0]] * fs[0] + fc[0]  # original units, shape (b, 24)
            if same_row:
                last = v[:, -1:] + (x[:, -1:, idx[1]] * fs[1] + fc[1])  # total_events of row 23
                v = ops.concatenate([v[:, 1:], last], axis=1)
            v = ops.clip(v, t_lo, t_hi)
            if use_log:
                # log(1 + x) rather than log1p: tf2onnx has no Log1p conversion
                v = ops.log(ops.maximum(v, 0.0) + 1.0)
            return (v - t_center) / t_scale

        def compute_output_shape(self, input_shape):
            return (input_shape[0], HORIZON)

    return SeasonalReference(name="seasonal_reference")


def make_blend_reference_layer(pre: Preprocessor, hp: HParams, feature_names: list[str]):
    """Per-horizon learned convex blend of three reference forecasts, all rebuilt in-graph from the
    scaled inputs and mapped into the target's scaled space (clip to target bounds, log1p if used,
    target scaler):
      - seasonal: `lag12_events` at input row k (= target 48 rows before forecast row k),
      - persistence: sum of `add_events + remove_events + update_events` at the last input row
        (= the latest observed total_events),
      - level: `ma6_events` at the last input row.
    Weights are softmax(logits[k]) per horizon step k, initialised to ~(0.96, 0.02, 0.02)."""
    import keras
    from keras import ops

    js = feature_names.index(hp.seasonal_reference_feature)
    jp = [feature_names.index(f) for f in hp.persistence_features]
    jl = feature_names.index(hp.level_feature)
    fc = [float(v) for v in pre.feature_center]
    fs = [float(v) for v in pre.feature_scale]
    t_lo, t_hi = float(pre.target_lower), float(pre.target_upper)
    t_center, t_scale = float(pre.target_center), float(pre.target_scale)
    use_log = bool(pre.use_log_transform)

    def to_target_space(v):
        v = ops.clip(v, t_lo, t_hi)
        if use_log:
            v = ops.log(ops.maximum(v, 0.0) + 1.0)
        return (v - t_center) / t_scale

    class BlendReference(keras.layers.Layer):
        def build(self, input_shape):
            init = np.zeros((HORIZON, 3), dtype="float32")
            init[:, 0] = 4.0
            self.logits = self.add_weight(
                name="logits", shape=(HORIZON, 3),
                initializer=keras.initializers.Constant(init), trainable=True)

        def call(self, x):
            seas = to_target_space(x[:, :, js] * fs[js] + fc[js])  # (b, 24)
            last = x[:, -1, :]
            pers = sum(last[:, j] * fs[j] + fc[j] for j in jp)
            pers = to_target_space(pers)[:, None]  # (b, 1)
            lvl = to_target_space(last[:, jl] * fs[jl] + fc[jl])[:, None]
            w = ops.softmax(self.logits, axis=-1)  # (24, 3)
            return seas * w[None, :, 0] + pers * w[None, :, 1] + lvl * w[None, :, 2]

        def compute_output_shape(self, input_shape):
            return (input_shape[0], HORIZON)

    return BlendReference(name="blend_reference")


def build_member(hp: HParams, pre: Preprocessor, feature_names: list[str], name: str):
    import keras
    from keras import layers, regularizers

    n_features = len(feature_names)
    inp = keras.Input((SEQUENCE_LENGTH, n_features), name="features")
    reg = regularizers.l2(hp.l2) if hp.l2 > 0 else None
    h = inp
    for i in range(hp.layers):
        h = layers.LSTM(
            hp.units,
            return_sequences=i < hp.layers - 1,
            dropout=hp.dropout,
            recurrent_dropout=hp.recurrent_dropout,
            kernel_regularizer=reg,
            name=f"lstm_{i}",
        )(h)
    h = layers.Dropout(hp.dropout, name="dropout")(h)
    if hp.arch == "plain":
        out = layers.Dense(HORIZON, kernel_regularizer=reg, name="head")(h)
    elif hp.arch == "seasonal_residual":
        # The correction starts at exactly 0, so an untrained member is the seasonal-naive forecast.
        corr = layers.Dense(
            HORIZON, kernel_initializer="zeros", kernel_regularizer=reg, name="head"
        )(h)
        ref = make_seasonal_reference_layer(pre, feature_names, hp.seasonal_reference_feature)(inp)
        out = layers.Add(name="forecast_scaled")([ref, corr])
    elif hp.arch == "blend_residual":
        corr = layers.Dense(
            HORIZON, kernel_initializer="zeros", kernel_regularizer=reg, name="head"
        )(h)
        ref = make_blend_reference_layer(pre, hp, feature_names)(inp)
        out = layers.Add(name="forecast_scaled")([ref, corr])
    else:
        raise ValueError(f"unknown arch {hp.arch}")
    return keras.Model(inp, out, name=name)


def make_loss(hp: HParams, pre: Preprocessor | None = None):
    import keras
    from keras import ops

    if hp.loss == "mae_orig":
        # MAE in original units (what the project is judged on), whatever the output space is.
        # Divided by a constant (the target's training median + 1) only to keep gradients O(1).
        tc, ts, use_log = pre.target_center, pre.target_scale, pre.use_log_transform
        norm = (float(np.expm1(tc)) if use_log else abs(tc)) + 1.0

        def inv(v):
            v = v * ts + tc
            return ops.exp(ops.minimum(v, 20.0)) - 1.0 if use_log else v

        def mae_orig(y_true, y_pred):
            return ops.mean(ops.abs(inv(y_pred) - inv(y_true)), axis=-1) / norm

        return mae_orig
    if hp.loss == "huber":
        return keras.losses.Huber(delta=hp.huber_delta)
    if hp.loss == "mae":
        return keras.losses.MeanAbsoluteError()
    if hp.loss == "mse":
        return keras.losses.MeanSquaredError()
    raise ValueError(hp.loss)


class TqdmEpochs:
    """A Keras callback factory drawing one tqdm bar per training run (one tick per epoch)."""

    @staticmethod
    def make(total: int, desc: str, position: int = 0):
        import keras
        from tqdm.auto import tqdm

        class _CB(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.bar = tqdm(total=total, desc=desc, unit="ep", leave=False, position=position)

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                self.bar.set_postfix(
                    loss=f"{logs.get('loss', float('nan')):.4f}",
                    val=f"{logs.get('val_loss', float('nan')):.4f}",
                )
                self.bar.update(1)

            def on_train_end(self, logs=None):
                self.bar.close()

        return _CB()


def train_member(
    hp: HParams,
    pre: Preprocessor,
    feature_names: list[str],
    seed: int,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    name: str,
    progress: bool = True,
):
    import keras

    set_seeds(seed)
    model = build_member(hp, pre, feature_names, name)
    model.compile(optimizer=keras.optimizers.Adam(hp.learning_rate), loss=make_loss(hp, pre))
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=hp.patience, restore_best_weights=True
        )
    ]
    if progress:
        callbacks.append(TqdmEpochs.make(hp.max_epochs, desc=name))
    hist = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=hp.max_epochs,
        batch_size=hp.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    val_losses = hist.history["val_loss"]
    best_epoch = int(np.argmin(val_losses)) + 1
    return model, {"seed": seed, "best_epoch": best_epoch, "epochs_run": len(val_losses),
                   "best_val_loss": float(np.min(val_losses))}


def build_ensemble(members: list, n_features: int, name: str):
    """One Keras model (hence one ONNX graph) averaging the members' scaled outputs."""
    import keras
    from keras import layers

    inp = keras.Input((SEQUENCE_LENGTH, n_features), name="features")
    outs = [m(inp) for m in members]
    out = outs[0] if len(outs) == 1 else layers.Average(name="ensemble_mean")(outs)
    return keras.Model(inp, out, name=name)


# --------------------------------------------------------------------------------------------
# putting it together


@dataclass
class Prepared:
    pre: Preprocessor
    x: np.ndarray  # (rows, 82) scaled float32
    y_scaled: np.ndarray  # (rows,) scaled target float32
    train_origins: np.ndarray
    val_origins: np.ndarray  # every origin with targets inside the validation split (early stopping)
    val_protocol_origins: np.ndarray  # every 24 rows inside validation (model selection)
    test_protocol_origins: np.ndarray  # every 24 rows inside test (reported metric)


def prepare(ds: Dataset, use_log_transform: bool, warmup_rows: int) -> Prepared:
    tr = slice(0, ds.train_end)
    pre = Preprocessor.fit(ds.features[tr], ds.target[tr], use_log_transform)
    x = pre.transform_features(ds.features)
    y_scaled = pre.transform_target(ds.target)
    return Prepared(
        pre=pre,
        x=x,
        y_scaled=y_scaled,
        train_origins=all_origins(0, ds.train_end, warmup_rows),
        val_origins=all_origins(ds.train_end, ds.val_end, 0),
        val_protocol_origins=protocol_origins(ds.train_end, ds.val_end),
        test_protocol_origins=protocol_origins(ds.val_end, ds.rows),
    )


def predict_original_units(model, p: Prepared, origins: np.ndarray) -> np.ndarray:
    out = model.predict(windows(p.x, origins), verbose=0, batch_size=256)
    return p.pre.inverse_target(out)
