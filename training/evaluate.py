#!/usr/bin/env python3
"""Score an exported model with onnxruntime (not Keras) on the rolling-origin protocol.

Protocol (test split of the seed data = rows 1151-1438): origins t = 1151 + 24k, k = 0..11; origin t
feeds the raw feature rows t-24..t-1 through the metadata's recipe (clip -> scale -> ONNX model ->
inverse target scale -> expm1 if log -> max(output_min)) and forecasts rows t..t+23. MAE over the
12 x 24 forecasts in original units of total_events. The seasonal-naive baseline predicts row r with
total_events one day earlier: row r-48 for 30-minute rows, r-24 for hourly rows (the metadata's
row_interval_minutes says which; the CSV must have that row interval). Prints

    horizon=24 origins=12 mae_model=M mae_seasonal_naive=N rel_mae=R

Only the .onnx file and its .json metadata are used (the preprocessing is rebuilt from the JSON),
so this also checks that the JSON is sufficient for the Rust implementation.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

import common as C
import onnx_tools as O

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CSV = os.path.normpath(
    os.path.join(HERE, "..", "..", "shared", "data", "cluster", "lstm_ready_cluster_data.csv")
)
DEFAULT_MODEL = os.path.normpath(os.path.join(HERE, "..", "models", "lstm_total_events_v1.onnx"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="path to the .onnx file (default: %(default)s)")
    ap.add_argument("--meta", default=None, help="metadata JSON (default: the .onnx path with .json)")
    ap.add_argument("--csv", default=DEFAULT_CSV, help="CSV with the training header (default: %(default)s)")
    ap.add_argument("--split", choices=["test", "validation"], default="test")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--verbose", action="store_true", help="also print per-origin MAE")
    args = ap.parse_args()

    meta_path = args.meta or os.path.splitext(args.model)[0] + ".json"
    with open(meta_path) as f:
        meta = json.load(f)
    ds = C.load_csv(args.csv, int(meta.get("row_interval_minutes", C.ROW_MINUTES)))
    missing = [n for n in meta["feature_names"] if n not in ds.feature_names]
    if missing:
        raise SystemExit(f"CSV lacks features the model needs: {missing}")
    if ds.sha256 != meta["training_data"]["sha256"]:
        print(f"note: CSV sha256 {ds.sha256[:12]}… differs from the training data "
              f"{meta['training_data']['sha256'][:12]}…")

    if args.split == "test":
        origins = C.protocol_origins(ds.val_end, ds.rows)
    else:
        origins = C.protocol_origins(ds.train_end, ds.val_end)
    sess = O.session(args.model, threads=args.threads)
    pred = O.forecast_with_onnx(sess, meta, ds, origins)
    s = C.protocol_scores(pred, ds.target, origins, ds.season)
    if args.verbose:
        sn = C.protocol_scores(C.seasonal_naive(ds.target, origins, ds.season), ds.target, origins, ds.season)
        print(f"split={args.split} rows={ds.rows} ({ds.row_minutes}-minute rows, seasonal naive {ds.season} rows back) "
              f"origins t={origins[0]}..{origins[-1]} step 24, last target row {s['last_target_row']}")
        for t, a, b in zip(origins, s["mae_per_origin"], sn["mae_per_origin"]):
            print(f"  t={t}: mae_model={a:.3f} mae_seasonal_naive={b:.3f}")
    print(f"horizon={C.HORIZON} origins={s['origins']} mae_model={s['mae_model']:.4f} "
          f"mae_seasonal_naive={s['mae_seasonal_naive']:.4f} rel_mae={s['rel_mae']:.4f}")


if __name__ == "__main__":
    main()
