#!/usr/bin/env python3
"""Writes golden.json: reference forecasts of the shipped model computed the Python way
(numpy recipe from the metadata JSON + onnxruntime), for the Rust test
`the_shipped_model_runs_in_rust_and_matches_its_reference_outputs`.

    training/.venv/bin/python src/forecast/testdata/golden.py \
        --model models/lstm_total_events_v2.json --csv <features export --grid rows output>

The windows are raw (unscaled) feature rows t-24..t-1 of the CSV for a few origins t; the Rust
side scales them itself, so the test covers clip, scale, the graph and the inverse transform.
"""
import argparse
import hashlib
import json
import os

import numpy as np
import onnxruntime as ort
import pandas as pd

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True, help="metadata JSON")
ap.add_argument("--csv", required=True, help="hour_offset,total_events,<82 features>")
ap.add_argument("--origins", default="1151,1415")
ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json"))
a = ap.parse_args()

meta = json.load(open(a.model))
onnx_path = os.path.join(os.path.dirname(a.model), meta["onnx"]["file"])
df = pd.read_csv(a.csv)
x = df[meta["feature_names"]].to_numpy(dtype=np.float64)
origins = [int(t) for t in a.origins.split(",")]
win = np.stack([x[t - 24:t] for t in origins])

cb = meta["clip_bounds"]["features"]
xs = np.clip(win, np.array(cb["lower"]), np.array(cb["upper"]))
xs = ((xs - np.array(meta["feature_scaler"]["center"])) / np.array(meta["feature_scaler"]["scale"])).astype(np.float32)
so = ort.SessionOptions()
so.intra_op_num_threads = 1
sess = ort.InferenceSession(onnx_path, sess_options=so, providers=["CPUExecutionProvider"])
out = sess.run([meta["onnx"]["outputs"][0]["name"]], {meta["onnx"]["inputs"][0]["name"]: xs})[0]
y = out.astype(np.float64) * meta["target_scaler"]["scale"] + meta["target_scaler"]["center"]
if meta["use_log_transform"]:
    y = np.expm1(y)
y = np.maximum(y, meta.get("output_min", 0.0))

sha = hashlib.sha256(open(onnx_path, "rb").read()).hexdigest()
json.dump({
    "model": meta["name"],
    "onnx_sha256": sha,
    "csv": os.path.basename(a.csv),
    "origins": origins,
    "windows": win.tolist(),
    "forecasts": y.tolist(),
}, open(a.out, "w"))
print(f"wrote {a.out}: {len(origins)} windows, model {meta['name']} sha256 {sha[:12]}")
