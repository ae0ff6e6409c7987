"""ONNX export helpers and the onnxruntime inference path shared by train.py and evaluate.py."""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

import common as C

INPUT_NAME = "features"
OUTPUT_NAME = "forecast"
BATCH_DIM = "batch"


def export_onnx(model, path: str) -> dict:
    """Keras 3 `model.export(format="onnx")` (tf2onnx under the hood; a native ONNX LSTM op),
    then give the graph stable tensor names: input `features` [batch,24,82] and output
    `forecast` [batch,24]. Returns a description of the graph's interface."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.onnx")
        model.export(raw, format="onnx", verbose=False)
        m = onnx.load(raw)

    g = m.graph
    assert len(g.input) == 1 and len(g.output) == 1, "expected one input and one output"
    renames = {g.input[0].name: INPUT_NAME, g.output[0].name: OUTPUT_NAME}
    for node in g.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for vi in list(g.input) + list(g.output):
        vi.name = renames.get(vi.name, vi.name)
        dim0 = vi.type.tensor_type.shape.dim[0]
        dim0.Clear()
        dim0.dim_param = BATCH_DIM
    m.doc_string = "mcpwatch total_events forecaster (see the .json metadata next to this file)"
    onnx.checker.check_model(m)
    onnx.save(m, path)

    ops = sorted({n.op_type for n in g.node})
    return {
        "opset": int(next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))),
        "ir_version": int(m.ir_version),
        "ops": ops,
        "inputs": [{"name": INPUT_NAME, "dtype": "float32",
                    "shape": [BATCH_DIM, C.SEQUENCE_LENGTH, int(model.inputs[0].shape[-1])]}],
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": [BATCH_DIM, C.HORIZON]}],
    }


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def session(path: str, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def forecast_with_onnx(sess, meta: dict, ds: C.Dataset, origins: np.ndarray) -> np.ndarray:
    """The full inference recipe, driven by the metadata JSON only. Returns (n, 24) forecasts in
    original units of the target for each origin t (inputs: raw rows t-24 .. t-1)."""
    pre = C.Preprocessor.from_json(meta)
    # Select the feature columns BY NAME in the metadata's order.
    idx = [ds.feature_names.index(n) for n in meta["feature_names"]]
    raw = ds.features[:, idx]  # already forward-filled then 0 by load_csv
    x = C.windows(raw, origins)  # (n, 24, 82) raw
    x = np.clip(x, pre.feature_lower, pre.feature_upper)  # 1. clip
    x = ((x - pre.feature_center) / pre.feature_scale).astype(np.float32)  # 2. scale
    out = sess.run([meta["onnx"]["outputs"][0]["name"]],
                   {meta["onnx"]["inputs"][0]["name"]: x})[0]  # 3. model
    return pre.inverse_target(out)  # 4. inverse scale, 5. expm1 if log, 6. max(., output_min)
