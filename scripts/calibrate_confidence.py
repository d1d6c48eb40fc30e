"""Calibrate the confidence of a model: localize datasets with truth, fit P(position error <= 5 m).

    .venv/bin/python scripts/calibrate_confidence.py DATASET [DATASET ...] [--model default] [--depth mono]
        [--features out/calib-features.json] [--refit-only] [--write MODEL.safetensors]

Collects each localized photo's quality numbers (``confidence.features``) and its position error, fits a
logistic regression (L2-regularised, Newton steps, numpy only) and prints the coefficients for
`confidence.CALIBRATION`, the reliability table (predicted vs observed hit rate per bin) and how the
status threshold splits the photos. Photos that failed are left out: they carry no confidence.
``--write`` stores the fitted weights in the model file's metadata (key ``confidence``), where the
Localizer finds them.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

from safetensors.torch import save_file

from loc2_engine.bench import run_bench
from loc2_engine.confidence import FEATURE_NAMES, HIT_RADIUS_M
from loc2_engine.models.base import load_state_file
from loc2_engine.pipeline import Localizer


def collect(datasets, model, depth):
    rows = []
    loc = Localizer(model, depth=depth)
    for d in datasets:
        def keep(result, record):
            if result.ok and math.isfinite(record.pos_err_m):
                rows.append({"photo": result.photo, "camera": result.camera, "orientation": record.orientation,
                             "err_m": record.pos_err_m, "head_err_deg": record.heading_err_deg,
                             "features": result.quality_features})
        run_bench(d, loc, on_result=keep, progress=lambda i, n, r: print(f"\r{d} {i}/{n}", end="", file=sys.stderr))
        print(file=sys.stderr)
    return rows


def fit_logistic(X, y, l2=1e-2, steps=50):
    """Weights (F,) of P(y=1) = sigmoid(X w) by Newton's method; X (n, F) with a leading 1 column."""
    w = np.zeros(X.shape[1])
    reg = l2 * np.eye(X.shape[1])
    reg[0, 0] = 0.0  # the intercept is not shrunk
    for _ in range(steps):
        p = 1 / (1 + np.exp(-X @ w))
        grad = X.T @ (p - y) + reg @ w
        hess = X.T @ (X * (p * (1 - p))[:, None]) + reg
        w -= np.linalg.solve(hess, grad)
    return w


def write_calibration(path, calibration):
    """Rewrite the safetensors file ``path`` with ``calibration`` in its metadata (atomically)."""
    state, meta = load_state_file(path)
    meta["confidence"] = json.dumps(calibration)
    tmp = f"{path}.tmp"
    save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata=meta)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--model", default="default")
    ap.add_argument("--depth", default="mono")
    ap.add_argument("--features", default="out/calib-features.json")
    ap.add_argument("--refit-only", action="store_true", help="reuse --features instead of localizing")
    ap.add_argument("--write", metavar="MODEL_FILE", help="store the calibration in this safetensors file")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.refit_only:
        rows = json.load(open(args.features))
    else:
        rows = collect(args.datasets, args.model, args.depth)
        os.makedirs(os.path.dirname(args.features) or ".", exist_ok=True)
        json.dump(rows, open(args.features, "w"), indent=1)
    X = np.array([[1.0] + [r["features"][k] for k in FEATURE_NAMES] for r in rows])
    y = np.array([r["err_m"] <= HIT_RADIUS_M for r in rows], float)
    w = fit_logistic(X, y)
    p = 1 / (1 + np.exp(-X @ w))
    calibration = dict(zip(("intercept",) + FEATURE_NAMES, np.round(w, 4).tolist()))
    print("calibration:", json.dumps(calibration))
    print(f"{len(y)} photos, {y.mean():.0%} within {HIT_RADIUS_M:g} m; log-loss {-np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12)):.3f} "
          f"(constant {-(y.mean() * math.log(y.mean()) + (1 - y.mean()) * math.log(1 - y.mean())):.3f})")
    print("bin | n | mean predicted | observed")
    for lo in np.arange(0, 1, 0.2):
        m = (p >= lo) & (p < lo + 0.2 + (lo >= 0.8))
        if m.any():
            print(f"{lo:.1f}-{lo + 0.2:.1f} | {m.sum()} | {p[m].mean():.2f} | {y[m].mean():.2f}")
    for th in (0.5, 0.6, 0.7, 0.8, 0.9):
        ok = p >= th
        print(f"threshold {th:.1f}: ok {ok.sum()} ({ok.mean():.0%}), of which within {HIT_RADIUS_M:g} m "
              f"{y[ok].mean() if ok.any() else float('nan'):.0%}, worst {max([r['err_m'] for r, o in zip(rows, ok) if o], default=float('nan')):.1f} m")
    if args.write:
        write_calibration(args.write, calibration)
        print("written to", args.write)


if __name__ == "__main__":
    main()
