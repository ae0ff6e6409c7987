#!/usr/bin/env python3
"""Train the mcpwatch `total_events` forecaster and export it as ONNX + metadata JSON.

Reads any CSV whose header is `hour_offset,total_events,<82 feature columns>` (the seed's layout),
splits it chronologically 70/10/20, forward-fills then zero-fills missing values, winsorises every
column at [Q1-3*IQR, Q3+3*IQR] (train split only), optionally log1p-transforms the target, fits
RobustScaler-style scalers (median / IQR, train split only), and trains K LSTM members (each with
early stopping on the validation split) that forecast the next 24 rows at once from the last 24 rows
of the 82 features. The members are averaged inside ONE Keras model, exported with Keras 3
`model.export(path, format="onnx")`, checked against Keras with onnxruntime and scored on the
rolling-origin protocol (see evaluate.py).

Writes <out>/<name>.onnx and <out>/<name>.json (everything the Rust daemon needs for inference).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
from tqdm.auto import tqdm

import common as C
import onnx_tools as O

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
DEFAULT_CSV = os.path.normpath(
    os.path.join(REPO_ROOT, "..", "shared", "data", "cluster", "lstm_ready_cluster_data.csv")
)
DEFAULT_NAME = "lstm_total_events_v1"
DATA_SOURCE = (
    "github.com/MCP-AI-Ops/mcp_core @ 8b6484e, data/lstm_ready_cluster_data.csv "
    "(aggregates of a public cluster trace); not redistributed here"
)

def inference_steps(row_minutes: int) -> list[str]:
    return [
        "1. Take the last 24 rows (buckets), oldest first, of the 82 features listed in feature_names, in "
        f"exactly that order -> a 24x82 matrix. Rows are {row_minutes} minutes apart "
        f"(one day = {C.season_rows(row_minutes)} rows; row_interval_minutes).",
    ] + INFERENCE_STEPS_2_TO_9


INFERENCE_STEPS_2_TO_9 = [
    "2. Missing values: forward-fill each feature along time, then replace what is still missing "
    "(and NaN/inf) with 0.",
    "3. Clip: x[i][j] = min(max(x[i][j], clip_bounds.features.lower[j]), clip_bounds.features.upper[j]). "
    "(Some lower==upper: those features are constant after clipping; that is intended.)",
    "4. Scale: x[i][j] = (x[i][j] - feature_scaler.center[j]) / feature_scaler.scale[j]  (scale is never 0).",
    "5. Build a float32 tensor of shape [batch, 24, 82] (row-major: batch, time, feature) and feed it "
    "as onnx.inputs[0].name.",
    "6. Read onnx.outputs[0].name: float32 [batch, 24]; element k is the forecast for the row k+1 steps "
    "after the last input row (k = 0..23), in scaled target space.",
    "7. Inverse scale: t = out * target_scaler.scale + target_scaler.center.",
    "8. If use_log_transform: y = expm1(t), else y = t.",
    "9. y = max(y, output_min). y is total_events in original units.",
    "Do NOT clip or log-transform the model output with clip_bounds.target; the target bounds were only "
    "used on the training targets (and, inside the graph, on the seasonal reference).",
]


def parse_args(argv=None):
    d = C.HParams()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--csv", default=DEFAULT_CSV,
                    help="training CSV: hour_offset,total_events,<82 features> (default: %(default)s)")
    ap.add_argument("--name", default=DEFAULT_NAME, help="model name / file stem (default: %(default)s)")
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "models"),
                    help="output directory for <name>.onnx and <name>.json (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=1,
                    help="base seed; member i is trained with seed 1000*seed + i (default: %(default)s)")
    ap.add_argument("--members", type=int, default=d.members, help="ensemble size K (default: %(default)s)")
    ap.add_argument("--arch", choices=["plain", "seasonal_residual", "blend_residual"], default=d.arch,
                    help="plain: LSTM -> Dense(24). seasonal_residual: seasonal-naive reference rebuilt "
                         "in-graph from the lag12_events input + LSTM correction. blend_residual: per-horizon learned "
                         "blend of seasonal / persistence / level references + LSTM correction (default: %(default)s)")
    ap.add_argument("--units", type=int, default=d.units, help="LSTM units (default: %(default)s)")
    ap.add_argument("--layers", type=int, default=d.layers, help="stacked LSTM layers (default: %(default)s)")
    ap.add_argument("--dropout", type=float, default=d.dropout, help="input + head dropout (default: %(default)s)")
    ap.add_argument("--l2", type=float, default=d.l2, help="L2 weight penalty (default: %(default)s)")
    ap.add_argument("--loss", choices=["huber", "mae", "mse", "mae_orig"], default=d.loss,
                    help="mae_orig = MAE in original units of the target, through the inverse transform (default: %(default)s)")
    ap.add_argument("--huber-delta", type=float, default=d.huber_delta, help="(default: %(default)s)")
    ap.add_argument("--log-target", dest="use_log_transform", action="store_true", default=d.use_log_transform,
                    help="log1p-transform the target before scaling")
    ap.add_argument("--no-log-target", dest="use_log_transform", action="store_false")
    ap.add_argument("--learning-rate", type=float, default=d.learning_rate, help="Adam (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=d.batch_size, help="(default: %(default)s)")
    ap.add_argument("--max-epochs", type=int, default=d.max_epochs, help="(default: %(default)s)")
    ap.add_argument("--patience", type=int, default=d.patience,
                    help="early-stopping patience on validation loss (default: %(default)s)")
    ap.add_argument("--row-minutes", type=int, default=C.ROW_MINUTES,
                    help="minutes between two CSV rows, i.e. the bucket width the daemon must use "
                         "(features.bucket_width_secs = 60 x this); recorded as row_interval_minutes. One day "
                         "= 1440/this rows: the seasonal naive of the protocol looks that far back "
                         "(default: %(default)s)")
    ap.add_argument("--warmup-rows", type=int, default=None,
                    help="skip training windows whose input starts before this row (lags/MAs need one day "
                         "of history) (default: one day of rows, 1440 / --row-minutes)")
    ap.add_argument("--seasonal-reference-feature", default=d.seasonal_reference_feature,
                    help="seasonal_residual only: the feature whose value at input row k is the target one "
                         "day before forecast row k (24 rows back from an input row when a day is 48 rows: "
                         "lag12_events in the seed's columns, lag24_events in the engine's 30-minute rows), "
                         "or `total_events` for hourly rows (a day = 24 rows): the target at input row k, "
                         "rebuilt in-graph from lag1_events and diff_1h (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=0,
                    help="TensorFlow intra- and inter-op threads; 0: TF_NUM_INTRAOP_THREADS / "
                         "TF_NUM_INTEROP_THREADS, else TensorFlow's default (default: %(default)s)")
    ap.add_argument("--component", action="append", default=[], metavar="KEY=VAL,...",
                    help="an ensemble component: comma-separated overrides of the flags above "
                         "(arch, units, layers, dropout, l2, loss, huber_delta, learning_rate, batch_size, "
                         "max_epochs, patience, members), e.g. 'arch=plain,units=64,loss=huber'. Repeat for "
                         "a heterogeneous ensemble; every component trains `members` members. All components "
                         "share the preprocessing (so --log-target / --no-log-target is global). "
                         "Without --component: one component from the flags.")
    ap.add_argument("--no-test-metrics", action="store_true",
                    help="do not score the test split (metadata then has no test metrics)")
    return ap.parse_args(argv)


def hparams_from_args(a) -> C.HParams:
    return C.HParams(
        arch=a.arch, units=a.units, layers=a.layers, dropout=a.dropout, l2=a.l2, loss=a.loss,
        huber_delta=a.huber_delta, use_log_transform=a.use_log_transform,
        learning_rate=a.learning_rate, batch_size=a.batch_size, max_epochs=a.max_epochs,
        patience=a.patience, members=a.members,
        warmup_rows=a.warmup_rows if a.warmup_rows is not None else C.season_rows(a.row_minutes),
        seasonal_reference_feature=a.seasonal_reference_feature,
    )


COMPONENT_KEYS = {
    "arch": str, "units": int, "layers": int, "dropout": float, "l2": float, "loss": str,
    "huber_delta": float, "learning_rate": float, "batch_size": int, "max_epochs": int,
    "patience": int, "members": int,
}


def components_from_args(a) -> list[C.HParams]:
    base = hparams_from_args(a)
    if not a.component:
        return [base]
    out = []
    for spec in a.component:
        kv = {}
        for item in filter(None, spec.split(",")):
            k, _, v = item.partition("=")
            k = k.strip().replace("-", "_")
            if k not in COMPONENT_KEYS:
                raise SystemExit(f"--component: unknown key {k!r} (allowed: {sorted(COMPONENT_KEYS)})")
            kv[k] = COMPONENT_KEYS[k](v.strip())
        out.append(dataclasses.replace(base, **kv))
    return out


def versions() -> dict:
    import keras
    import onnx
    import onnxruntime
    import pandas
    import tensorflow as tf
    import tf2onnx

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads > 0:
        os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(args.threads)
    C.configure_threads()
    components = components_from_args(args)
    hp = components[0]  # preprocessing settings are shared by all components
    t_start = time.time()

    ds = C.load_csv(args.csv, args.row_minutes)
    p = C.prepare(ds, hp.use_log_transform, hp.warmup_rows)
    xtr, ytr = C.windows(p.x, p.train_origins), C.targets(p.y_scaled, p.train_origins)
    xva, yva = C.windows(p.x, p.val_origins), C.targets(p.y_scaled, p.val_origins)
    print(
        f"data {ds.path}: {ds.rows} rows, sha256 {ds.sha256[:12]}…; train rows 0-{ds.train_end - 1} "
        f"({len(p.train_origins)} windows), val rows {ds.train_end}-{ds.val_end - 1} "
        f"({len(p.val_origins)} windows), test rows {ds.val_end}-{ds.rows - 1}",
        flush=True,
    )

    # member i of component c is trained with seed 1000*seed + 100*c + i
    plan = [(c, i, 1000 * args.seed + 100 * c + i)
            for c, chp in enumerate(components) for i in range(chp.members)]
    members, member_info = [], []
    for c, i, s in tqdm(plan, desc="ensemble members", unit="member"):
        chp = components[c]
        m, info = C.train_member(chp, p.pre, ds.feature_names, s, xtr, ytr, xva, yva,
                                 name=f"c{c}_member_{i}", progress=True)
        info = {"component": c, "arch": chp.arch, **info}
        members.append(m)
        member_info.append(info)
        tqdm.write(f"component {c} ({chp.arch}) member {i} seed {s}: best epoch "
                   f"{info['best_epoch']}/{info['epochs_run']}, val loss {info['best_val_loss']:.4f}")

    model = C.build_ensemble(members, len(ds.feature_names), name=args.name)
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, f"{args.name}.onnx")
    json_path = os.path.join(args.out, f"{args.name}.json")

    # Keras needs one call before export.
    every = np.arange(C.SEQUENCE_LENGTH, ds.rows - C.HORIZON + 1)
    keras_out = model.predict(C.windows(p.x, every), verbose=0, batch_size=512)
    print("exporting ONNX …", flush=True)
    onnx_iface = O.export_onnx(model, onnx_path)

    meta = {
        "name": args.name,
        "format_version": 1,
        "model_type": "lstm",
        "target": C.TARGET,
        "sequence_length": C.SEQUENCE_LENGTH,
        "horizon": C.HORIZON,
        "row_interval_minutes": ds.row_minutes,
        "feature_names": list(ds.feature_names),
        **p.pre.to_json(ds.feature_names),
        "missing_values": "forward-fill each feature along time, then 0",
        "inference": {
            "summary": "clip -> scale -> model -> inverse target scale -> expm1 (if use_log_transform) -> max(output_min)",
            "steps": inference_steps(ds.row_minutes),
        },
        "onnx": {"file": os.path.basename(onnx_path), **onnx_iface},
        "architecture": {
            "summary": f"ensemble of {len(members)} LSTM members averaged in scaled target space inside one ONNX graph",
            "components": [describe_architecture(chp, ds) for chp in components],
        },
        "hyperparameters": {
            "base_seed": args.seed,
            "member_seeds": [s for _, _, s in plan],
            "components": [dataclasses.asdict(chp) for chp in components],
        },
        "members": member_info,
        "training_data": {
            "path": args.csv,
            "path_from_repo_root": os.path.relpath(os.path.abspath(args.csv), REPO_ROOT),
            "sha256": ds.sha256,
            "rows": ds.rows,
            "columns": [C.TIME_COLUMN, C.TARGET] + list(ds.feature_names),
            "source": DATA_SOURCE,
        },
        "split": {
            "method": "chronological 70/10/20 by row (floor(rows*0.7), floor(rows*0.8))",
            "train_rows": [0, ds.train_end - 1],
            "validation_rows": [ds.train_end, ds.val_end - 1],
            "test_rows": [ds.val_end, ds.rows - 1],
            "scalers_and_clip_bounds_fitted_on": "train_rows",
            "training_windows": {"origins": [int(p.train_origins[0]), int(p.train_origins[-1])],
                                 "count": int(len(p.train_origins))},
            "early_stopping_windows": {"origins": [int(p.val_origins[0]), int(p.val_origins[-1])],
                                       "count": int(len(p.val_origins))},
        },
    }

    # ---- ONNX vs Keras, and the protocol metrics computed with onnxruntime from the JSON alone ----
    sess = O.session(onnx_path)
    onnx_out = sess.run([O.OUTPUT_NAME], {O.INPUT_NAME: C.windows(p.x, every)})[0]
    diff = float(np.max(np.abs(onnx_out - keras_out)))
    diff_units = float(np.max(np.abs(p.pre.inverse_target(onnx_out) - p.pre.inverse_target(keras_out))))
    print(f"onnx vs keras over {len(every)} windows: max |diff| {diff:.2e} (scaled), {diff_units:.2e} (events)")
    if diff > 1e-3:
        raise SystemExit("ONNX output does not match Keras output")
    meta["verification"] = {
        "windows": int(len(every)),
        "onnx_vs_keras_max_abs_diff_scaled": diff,
        "onnx_vs_keras_max_abs_diff_events": diff_units,
    }

    metrics = {
        "protocol": (
            "rolling origin every 24 rows inside the split; origin t uses input rows t-24..t-1 and forecasts "
            "rows t..t+23 (horizon 24); MAE over all origins x 24 steps in original units of total_events; "
            f"seasonal naive predicts row r with total_events[r-{ds.season}] (one day earlier); rel_mae = mae_model / mae_seasonal_naive; "
            "computed with onnxruntime from this JSON (training/evaluate.py)"
        ),
    }
    splits = {"validation": p.val_protocol_origins}
    if not args.no_test_metrics:
        splits["test"] = p.test_protocol_origins
    for split, origins in splits.items():
        pred = O.forecast_with_onnx(sess, meta, ds, origins)
        metrics[split] = C.protocol_scores(pred, ds.target, origins, ds.season)
        s = metrics[split]
        print(f"{split}: horizon={C.HORIZON} origins={s['origins']} mae_model={s['mae_model']:.4f} "
              f"mae_seasonal_naive={s['mae_seasonal_naive']:.4f} rel_mae={s['rel_mae']:.4f}")
    meta["metrics"] = metrics

    cmd = "cd training && " + " ".join(
        [".venv/bin/python", "train.py"] + [shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])]
    )
    meta["reproduce"] = {
        "from_clean_clone": "make -C training   (creates training/.venv, installs training/requirements.txt, "
                            "trains, evaluates; needs ../shared/data next to the repository)",
        "train_command": cmd,
        "evaluate_command": f"cd training && .venv/bin/python evaluate.py --model {os.path.relpath(onnx_path, HERE)}",
        "deterministic": "seeds fixed (keras.utils.set_random_seed per member, TF op determinism); CPU only",
    }
    meta["versions"] = versions()
    meta["onnx"]["sha256"] = O.file_sha256(onnx_path)
    meta["trained_at"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta["training_seconds"] = round(time.time() - t_start, 1)

    with open(json_path, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"wrote {onnx_path} and {json_path} in {meta['training_seconds']}s")


def describe_architecture(hp: C.HParams, ds: C.Dataset) -> dict:
    lstm = (f"Input[24,82] -> {hp.layers}x LSTM({hp.units}, input dropout={hp.dropout}) -> "
            f"Dropout({hp.dropout}) -> Dense(24)")
    to_target = ("clipped to clip_bounds.target" + (", log1p" if hp.use_log_transform else "")
                 + " and scaled with target_scaler")
    if hp.arch == "plain":
        member, internal = lstm, []
    elif hp.arch == "seasonal_residual":
        if hp.seasonal_reference_feature == C.SAME_ROW_TARGET:
            ref = ("input row k's total_events (24 rows = one day before forecast row k in hourly rows), "
                   "rebuilt as input row k+1's `lag1_events` for k < 23 and as the last row's "
                   "`lag1_events + diff_1h` for k = 23, each unscaled with the feature scaler")
        else:
            ref = (f"input row k's `{hp.seasonal_reference_feature}` (meant to be total_events 24 rows before "
                   f"that row, i.e. {C.SEQUENCE_LENGTH + 24} rows before forecast row k; {ds.season} rows = one "
                   f"day at {ds.row_minutes}-minute rows) unscaled with the feature scaler")
        member = (f"{lstm} (zero-initialised) = correction; plus a fixed seasonal reference: for step k, "
                  f"{ref}, {to_target}; output = reference + correction")
        internal = C.seasonal_reference_features(hp.seasonal_reference_feature)
    else:
        member = (f"{lstm} (zero-initialised) = correction; plus a reference that is, per step k, a learned "
                  f"softmax-weighted blend of (a) seasonal: input row k's `{hp.seasonal_reference_feature}`, "
                  f"(b) persistence: sum of {', '.join(hp.persistence_features)} at the last input row, "
                  f"(c) level: `{hp.level_feature}` at the last input row; each unscaled with the feature scaler, "
                  f"{to_target}; output = reference + correction")
        internal = [hp.seasonal_reference_feature, *hp.persistence_features, hp.level_feature]
    return {
        "kind": hp.arch,
        "member": member,
        "members": hp.members,
        "features_used_by_name_inside_the_graph": internal,
        "note": "everything above is inside the ONNX graph; the graph's input is just the 24x82 scaled window",
    }


if __name__ == "__main__":
    main()
