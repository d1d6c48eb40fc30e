"""Calibrate the confidence of a model: localize datasets with truth, fit P(position error <= 5 m).

    .venv/bin/python scripts/calibrate_confidence.py DATASET [DATASET ...] [--model default] [--depth mono]
        [--features out/calib-features.json] [--refit-only] [--holdout DATASET ...]
        [--holdout-features out/holdout-features.json] [--l2 1.0] [--write MODEL.safetensors]

Collects each localized photo's quality numbers (``confidence.quality_features``) and its position error,
fits a logistic regression (L2-regularised, ``--l2``, Newton steps, numpy only) and prints the coefficients, the
reliability table (predicted vs observed hit rate per bin) and how the status threshold splits the photos,
on the calibration photos and, with ``--holdout``, on photos of other datasets that the fit never saw (calibrate
on kinds of place and looks the model was not trained on, and check on others still). Photos that failed are
left out: they carry no confidence. ``--write`` stores the fitted weights in the model file's metadata (key
``confidence``), where the Localizer finds them.
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
from loc2_engine.confidence import FEATURE_NAMES, HIT_RADIUS_M, MIN_INLIERS, RADIUS_68, sigma_from
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


def fit_logistic(X, y, l2, steps=50):
    """Weights (F,) of P(y=1) = sigmoid(X w) by Newton's method; X (n, F) with a leading 1 column; l2: the ridge
    penalty of every weight but the intercept's."""
    w = np.zeros(X.shape[1])
    reg = l2 * np.eye(X.shape[1])
    reg[0, 0] = 0.0  # the intercept is not shrunk
    for _ in range(steps):
        p = 1 / (1 + np.exp(-X @ w))
        grad = X.T @ (p - y) + reg @ w
        hess = X.T @ (X * (p * (1 - p))[:, None]) + reg
        w -= np.linalg.solve(hess, grad)
    return w


def fit_sigma(X, err_m, l2=1e-2):
    """Weights (F,) of log sigma_m over X (n, F) with a leading 1 column: least squares on log error (ridge
    ``l2``), then the intercept shifted so that 68 % of the errors are within RADIUS_68 · sigma_m."""
    reg = l2 * np.eye(X.shape[1])
    reg[0, 0] = 0.0
    w = np.linalg.solve(X.T @ X + reg, X.T @ np.log(np.maximum(err_m, 0.01)))
    w[0] += np.quantile(np.log(np.maximum(err_m, 0.01)) - X @ w, 0.68) - np.log(RADIUS_68)
    return w


def sigma_coverage(rows, sigma_weights):
    """The share of ``rows`` whose error is within 1, RADIUS_68 and 3 sigma_m (the calibrated one)."""
    calibration = {"sigma": sigma_weights}
    ratio = np.array([r["err_m"] / sigma_from(r["features"], calibration, 1.0) for r in rows])
    return {k: float((ratio <= k).mean()) for k in (1.0, RADIUS_68, 3.0)}, float(np.median(
        [sigma_from(r["features"], calibration, 1.0) for r in rows]))


def write_calibration(path, calibration):
    """Rewrite the safetensors file ``path`` with ``calibration`` in its metadata (atomically)."""
    state, meta = load_state_file(path)
    meta["confidence"] = json.dumps(calibration)
    tmp = f"{path}.tmp"
    save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata=meta)
    os.replace(tmp, path)


def report(rows, w, sigma_weights, title):
    """The reliability of the confidence ``w`` gives ``rows``: log-loss, per-bin hit rates, status splits;
    and how often sigma_m (``sigma_weights``) covers the error."""
    X = np.array([[1.0] + [r["features"].get(k, 0.0) for k in FEATURE_NAMES] for r in rows])
    y = np.array([r["err_m"] <= HIT_RADIUS_M for r in rows], float)
    p = 1 / (1 + np.exp(-X @ w))
    base = min(max(y.mean(), 1e-6), 1 - 1e-6)
    print(f"== {title}: {len(y)} photos, {y.mean():.0%} within {HIT_RADIUS_M:g} m; log-loss "
          f"{-np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12)):.3f} (constant "
          f"{-(base * math.log(base) + (1 - base) * math.log(1 - base)):.3f})")
    print("confidence | photos | mean confidence | within 5 m")
    for lo in np.arange(0, 1, 0.2):
        m = (p >= lo) & (p < lo + 0.2 + (lo >= 0.8))
        if m.any():
            print(f"{lo:.1f}-{lo + 0.2:.1f} | {m.sum()} | {p[m].mean():.2f} | {y[m].mean():.2f}")
    err = np.array([r["err_m"] for r in rows])
    for th in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        ok = (p >= th) & np.array([math.expm1(r["features"]["log_inliers"]) >= MIN_INLIERS for r in rows])
        print(f"threshold {th:.2f}: ok {ok.sum()} ({ok.mean():.0%}), of which within {HIT_RADIUS_M:g} m "
              f"{y[ok].mean() if ok.any() else float('nan'):.0%}, beyond 10 m {int((err[ok] > 10).sum())}, "
              f"worst {err[ok].max() if ok.any() else float('nan'):.1f} m")
    covered, median_sigma = sigma_coverage(rows, sigma_weights)
    print(f"sigma_m: median {median_sigma:.2f} m against a median error of {np.median(err):.2f} m; the error is "
          f"within 1 sigma_m for {covered[1.0]:.0%}, {RADIUS_68:.3f} sigma_m (68 % of a 2-D Gaussian) for "
          f"{covered[RADIUS_68]:.0%}, 3 sigma_m for {covered[3.0]:.0%}")


def rows_of(datasets, features, model, depth, refit_only):
    """Each localized photo's features and errors: collected (and saved to ``features``), or read back."""
    if refit_only:
        return json.load(open(features))
    rows = collect(datasets, model, depth)
    os.makedirs(os.path.dirname(features) or ".", exist_ok=True)
    json.dump(rows, open(features, "w"), indent=1)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--model", default="default")
    ap.add_argument("--depth", default="mono")
    ap.add_argument("--features", default="out/calib-features.json")
    ap.add_argument("--refit-only", action="store_true", help="reuse --features instead of localizing")
    ap.add_argument("--holdout", nargs="*", default=[], metavar="DATASET",
                    help="datasets to check the fitted confidence on (never fitted on)")
    ap.add_argument("--holdout-features", default="out/holdout-features.json")
    ap.add_argument("--l2", type=float, default=1.0,
                    help="ridge penalty of the confidence's weights (default 1: weaker fits were too sure of "
                         "themselves on towns unlike the calibration's)")
    ap.add_argument("--write", metavar="MODEL_FILE", help="store the calibration in this safetensors file")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = rows_of(args.datasets, args.features, args.model, args.depth, args.refit_only)
    X = np.array([[1.0] + [r["features"].get(k, 0.0) for k in FEATURE_NAMES] for r in rows])
    y = np.array([r["err_m"] <= HIT_RADIUS_M for r in rows], float)
    w = fit_logistic(X, y, l2=args.l2)
    calibration = dict(zip(("intercept",) + FEATURE_NAMES, np.round(w, 4).tolist()))
    calibration["sigma"] = dict(zip(("intercept",) + FEATURE_NAMES,
                                    np.round(fit_sigma(X, np.array([r["err_m"] for r in rows])), 4).tolist()))
    print("calibration:", json.dumps(calibration))
    report(rows, w, calibration["sigma"], "calibration photos")
    if args.holdout or args.refit_only and os.path.exists(args.holdout_features):
        held = rows_of(args.holdout, args.holdout_features, args.model, args.depth, not args.holdout)
        report(held, w, calibration["sigma"], "held-out photos")
    if args.write:
        write_calibration(args.write, calibration)
        print("written to", args.write)


if __name__ == "__main__":
    main()
