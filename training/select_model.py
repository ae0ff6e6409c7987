#!/usr/bin/env python3
"""Model selection on the VALIDATION split only (the test split is never looked at here).

For every candidate configuration, trains one member per seed, then reports on the validation
protocol (rolling origins every 24 rows inside rows 1007-1150, horizon 24, MAE in original units):
the single-member rel_mae (mean and std across seeds) and the rel_mae of the average of those
members (what a K-member ensemble gives). Results are appended to a JSON-lines file.

    .venv/bin/python select_model.py --configs all --seeds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
from tqdm.auto import tqdm

import common as C

DEFAULT_CSV = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "cluster",
    "lstm_ready_cluster_data.csv",
)

# name -> overrides of common.HParams
CANDIDATES: dict[str, dict] = {
    # the seed's recipe: plain 24-output LSTM on log1p target, Huber loss
    "plain_u64": dict(arch="plain", units=64, dropout=0.2),
    "plain_u32": dict(arch="plain", units=32, dropout=0.2),
    # seasonal-naive skip connection inside the graph + LSTM correction
    "sres_u16": dict(arch="seasonal_residual", units=16, dropout=0.2),
    "sres_u32": dict(arch="seasonal_residual", units=32, dropout=0.2),
    "sres_u64": dict(arch="seasonal_residual", units=64, dropout=0.2),
    "sres_u32_d0": dict(arch="seasonal_residual", units=32, dropout=0.0),
    "sres_u32_d4": dict(arch="seasonal_residual", units=32, dropout=0.4),
    "sres_u32_mae": dict(arch="seasonal_residual", units=32, dropout=0.2, loss="mae"),
    "sres_u32_nolog": dict(arch="seasonal_residual", units=32, dropout=0.2, use_log_transform=False),
    "plain_u32_nolog": dict(arch="plain", units=32, dropout=0.2, use_log_transform=False),
    "plain_u32_nolog_mae": dict(arch="plain", units=32, dropout=0.2, use_log_transform=False, loss="mae"),
    "plain_u64_nolog_mae": dict(arch="plain", units=64, dropout=0.2, use_log_transform=False, loss="mae"),
    "sres_u32_nolog_mae": dict(arch="seasonal_residual", units=32, dropout=0.2, use_log_transform=False, loss="mae"),
    "sres_u16_nolog_mae": dict(arch="seasonal_residual", units=16, dropout=0.2, use_log_transform=False, loss="mae"),
    "sres_u32_nolog_mae_lr3": dict(arch="seasonal_residual", units=32, dropout=0.2, use_log_transform=False, loss="mae", learning_rate=3e-4, patience=30),
    "sres_u64_nolog_mae": dict(arch="seasonal_residual", units=64, dropout=0.2, use_log_transform=False, loss="mae"),
    "sres_u32_nolog_mae_d4": dict(arch="seasonal_residual", units=32, dropout=0.4, use_log_transform=False, loss="mae"),
    "sres_u32_nolog_mae_l2e3": dict(arch="seasonal_residual", units=32, dropout=0.2, use_log_transform=False, loss="mae", l2=1e-3),
    "sres_u32x2_nolog_mae": dict(arch="seasonal_residual", units=32, layers=2, dropout=0.2, use_log_transform=False, loss="mae"),
    "blend_u32_nolog_mae": dict(arch="blend_residual", units=32, dropout=0.2, use_log_transform=False, loss="mae"),
    "blend_u32_mae": dict(arch="blend_residual", units=32, dropout=0.2, use_log_transform=True, loss="mae"),
    "blend_u32_nolog_huber": dict(arch="blend_residual", units=32, dropout=0.2, use_log_transform=False),
    "blend_u32_maeorig": dict(arch="blend_residual", units=32, dropout=0.2, use_log_transform=True, loss="mae_orig"),
    "sres_u32_maeorig": dict(arch="seasonal_residual", units=32, dropout=0.2, use_log_transform=True, loss="mae_orig"),
    "plain_u64_maeorig": dict(arch="plain", units=64, dropout=0.2, use_log_transform=True, loss="mae_orig"),
    "plain_u64_nolog": dict(arch="plain", units=64, dropout=0.2, use_log_transform=False),
}


def run_fold(hp: C.HParams, name: str, seeds: list[int], ds: C.Dataset) -> dict:
    p = C.prepare(ds, hp.use_log_transform, hp.warmup_rows)
    xtr, ytr = C.windows(p.x, p.train_origins), C.targets(p.y_scaled, p.train_origins)
    xva, yva = C.windows(p.x, p.val_origins), C.targets(p.y_scaled, p.val_origins)
    vo = p.val_protocol_origins
    outs, singles, infos = [], [], []
    for s in tqdm(seeds, desc=name, unit="seed", leave=False):
        m, info = C.train_member(hp, p.pre, ds.feature_names, s, xtr, ytr, xva, yva,
                                 name=f"{name}_s{s}", progress=True)
        out = m.predict(C.windows(p.x, vo), verbose=0)
        sc = C.protocol_scores(p.pre.inverse_target(out), ds.target, vo, ds.season)
        info["val_rel_mae"] = sc["rel_mae"]
        info["val_mae"] = sc["mae_model"]
        info["val_mae_per_origin"] = sc["mae_per_origin"]
        outs.append(out)
        singles.append(sc["rel_mae"])
        infos.append(info)
    ens = C.protocol_scores(p.pre.inverse_target(np.mean(outs, axis=0)), ds.target, vo, ds.season)
    return {
        "train_rows": [0, ds.train_end - 1],
        "val_rows": [ds.train_end, ds.val_end - 1],
        "single_rel_mae": singles,
        "ensemble_rel_mae": ens["rel_mae"],
        "ensemble_mae": ens["mae_model"],
        "mae_seasonal_naive": ens["mae_seasonal_naive"],
        "seasonal_naive_mae_per_origin": C.protocol_scores(
            C.seasonal_naive(ds.target, vo, ds.season), ds.target, vo, ds.season)["mae_per_origin"],
        "ensemble_mae_per_origin": ens["mae_per_origin"],
        "members": infos,
    }


def run_config(name: str, overrides: dict, seeds: list[int], ds: C.Dataset, fold_starts: list[int]) -> dict:
    """fold_starts: first validation row of each fold. Each fold trains (and fits its scalers) on
    rows [0, start) and validates on the 144 rows that follow. The last fold is the official
    validation split (rows 1007-1150); earlier folds are the same construction moved back in time."""
    hp = dataclasses.replace(C.HParams(), **overrides)
    t0 = time.time()
    val_len = ds.val_end - ds.train_end
    folds = []
    for start in fold_starts:
        fds = dataclasses.replace(ds, train_end=start, val_end=start + val_len)
        folds.append(run_fold(hp, f"{name}_f{start}", seeds, fds))
    singles = np.array([f["single_rel_mae"] for f in folds])  # (folds, seeds)
    return {
        "config": name,
        "hparams": dataclasses.asdict(hp),
        "seeds": seeds,
        "fold_starts": fold_starts,
        "folds": folds,
        # official validation split = last fold
        "val_single_rel_mae_mean": float(singles[-1].mean()),
        "val_single_rel_mae_std": float(singles[-1].std()),
        "val_ensemble_rel_mae": folds[-1]["ensemble_rel_mae"],
        # mean over folds
        "cv_single_rel_mae_mean": float(singles.mean()),
        "cv_single_rel_mae_seed_std": float(singles.mean(axis=0).std()),
        "cv_ensemble_rel_mae_mean": float(np.mean([f["ensemble_rel_mae"] for f in folds])),
        "seconds": round(time.time() - t0, 1),
    }


def run_mix(names: list[str], seeds: list[int], ds: C.Dataset) -> dict:
    """Equal-weight mixture of the members of several configs (they must share the preprocessing),
    scored on the official validation protocol, plus each config's own K-member ensemble."""
    hps = [dataclasses.replace(C.HParams(), **CANDIDATES[n]) for n in names]
    if len({(h.use_log_transform, h.warmup_rows) for h in hps}) != 1:
        raise SystemExit("mixed configs must share use_log_transform and warmup_rows")
    p = C.prepare(ds, hps[0].use_log_transform, hps[0].warmup_rows)
    xtr, ytr = C.windows(p.x, p.train_origins), C.targets(p.y_scaled, p.train_origins)
    xva, yva = C.windows(p.x, p.val_origins), C.targets(p.y_scaled, p.val_origins)
    vo = p.val_protocol_origins
    outs = {}
    for n, hp in zip(names, hps):
        outs[n] = []
        for s in tqdm(seeds, desc=n, unit="seed", leave=False):
            m, _ = C.train_member(hp, p.pre, ds.feature_names, s, xtr, ytr, xva, yva, name=f"{n}_s{s}")
            outs[n].append(m.predict(C.windows(p.x, vo), verbose=0))
    score = lambda o: C.protocol_scores(p.pre.inverse_target(o), ds.target, vo, ds.season)
    ref_hp = next((h for h in hps if h.arch == "seasonal_residual"), None)
    result = {"mix": names, "seeds": seeds, "row_minutes": ds.row_minutes,
              "seasonal_reference_feature": hps[0].seasonal_reference_feature, "per_config_ensemble": {}}
    if ref_hp is not None:  # the untrained seasonal_residual member is the in-graph reference alone
        m = C.build_member(ref_hp, p.pre, ds.feature_names, "reference_only")
        result["reference_only"] = score(m.predict(C.windows(p.x, vo), verbose=0))
    for n in names:
        result["per_config_ensemble"][n] = score(np.mean(outs[n], axis=0))
    result["mixture"] = score(np.mean([o for n in names for o in outs[n]], axis=0))
    result["seasonal_naive_mae_per_origin"] = C.protocol_scores(
        C.seasonal_naive(ds.target, vo, ds.season), ds.target, vo, ds.season)["mae_per_origin"]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=DEFAULT_CSV)
    ap.add_argument("--configs", default="all", help="comma-separated names, or 'all': " + ",".join(CANDIDATES))
    ap.add_argument("--seeds", type=int, default=3, help="seeds 1..N")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "selection.jsonl"))
    ap.add_argument("--folds", default=None, help="comma-separated first validation rows; default: the official split only (1007 for the 1439 half-hour rows, 504 for the 720 hourly rows); e.g. 719,863,1007")
    ap.add_argument("--mix", default=None,
                    help="comma-separated configs to train (seeds 1..N each) and score as one equal-weight mixture")
    ap.add_argument("--row-minutes", type=int, default=C.ROW_MINUTES,
                    help="minutes between rows (30: the seed CSV / --grid rows; 60: the hourly export)")
    ap.add_argument("--seasonal-reference-feature", default=None,
                    help="seasonal_residual reference for every candidate (see train.py --help); "
                         "default: the HParams default (lag12_events)")
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: environment / default)")
    args = ap.parse_args()

    if args.threads > 0:
        os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(args.threads)
    C.configure_threads()
    ds = C.load_csv(args.csv, args.row_minutes)
    # Hourly (or any) rows: one day of warm-up, and the chosen seasonal reference, for every candidate.
    common = {"warmup_rows": ds.season}
    if args.seasonal_reference_feature:
        common["seasonal_reference_feature"] = args.seasonal_reference_feature
    for v in CANDIDATES.values():
        for k, x in common.items():
            v.setdefault(k, x)
    if args.mix:
        r = run_mix(args.mix.split(","), list(range(1, args.seeds + 1)), ds)
        r["csv_sha256"] = ds.sha256
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(r) + "\n")
        if "reference_only" in r:
            print(f"reference only: val rel {r['reference_only']['rel_mae']:.4f}")
        for n, sc in r["per_config_ensemble"].items():
            print(f"{n}: val rel {sc['rel_mae']:.4f} per origin {[round(v, 1) for v in sc['mae_per_origin']]}")
        sc = r["mixture"]
        print(f"mixture: val rel {sc['rel_mae']:.4f} per origin {[round(v, 1) for v in sc['mae_per_origin']]}")
        print(f"seasonal naive per origin {[round(v, 1) for v in r['seasonal_naive_mae_per_origin']]}")
        return
    names = list(CANDIDATES) if args.configs == "all" else args.configs.split(",")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    seeds = list(range(1, args.seeds + 1))
    for name in tqdm(names, desc="configs", unit="cfg"):
        r = run_config(name, CANDIDATES[name], seeds, ds, [int(v) for v in args.folds.split(",")] if args.folds else [ds.train_end])
        r["csv_sha256"] = ds.sha256
        with open(args.out, "a") as f:
            f.write(json.dumps(r) + "\n")
        per_fold = " ".join(f"{f['val_rows'][0]}:{np.mean(f['single_rel_mae']):.3f}/{f['ensemble_rel_mae']:.3f}" for f in r["folds"])
        tqdm.write(
            f"{name:18s} val single {r['val_single_rel_mae_mean']:.3f}±{r['val_single_rel_mae_std']:.3f} ens {r['val_ensemble_rel_mae']:.3f}"
            f" | cv single {r['cv_single_rel_mae_mean']:.3f}±{r['cv_single_rel_mae_seed_std']:.3f} ens {r['cv_ensemble_rel_mae_mean']:.3f}"
            f" | folds(single/ens) {per_fold} | epochs {[[m['best_epoch'] for m in f['members']] for f in r['folds']]} {r['seconds']}s"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
