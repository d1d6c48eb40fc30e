"""Benchmark: localize every photo of a dataset (docs/manifest.md) and tabulate errors against the truth.

Groups: camera type (pano / pinhole) x orientation (known = the row has a heading prior, unknown = not),
plus the pinholes at least `WIDE_PINHOLE_DEG` wide (the group of the pinhole target in docs/evaluation.md), then the
camera groups split by status (ok / low_confidence) so that the confidence can be judged.

Per group: count, mean / median position error (m), recall at 1 m and 5 m, mean / median heading error
(degrees), recall at 1° and 5°, failures, median runtime per photo (s). A dataset of several kinds of place
(the manifest's `style` column, as `loc2 synth` writes it) gets the same rows per kind of place. The
reliability table bins the photos by confidence and gives the share of each bin within `HIT_RADIUS_M`, and how
many `ok` poses are within 5 m and beyond 10 m: whether the confidence can be trusted on that data.
Failed photos count as misses in every recall (recall is over all photos of the group); means and medians
are over the photos that were localized, so the `failed` column must be read beside them.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from .confidence import HIT_RADIUS_M
from .georef import LocalFrame, transform_points

#: pinholes at least this wide (HFOV, degrees) get their own rows: the accuracy target is set on them
WIDE_PINHOLE_DEG = 60.0

#: columns of a summary row, in table order: (key, header, format)
COLUMNS = (
    ("group", "group", "{}"),
    ("count", "n", "{:d}"),
    ("pos_mean_m", "mean m", "{:.2f}"),
    ("pos_median_m", "median m", "{:.2f}"),
    ("r_1m", "R@1m", "{:.0%}"),
    ("r_5m", "R@5m", "{:.0%}"),
    ("head_mean_deg", "mean °", "{:.2f}"),
    ("head_median_deg", "median °", "{:.2f}"),
    ("r_1deg", "R@1°", "{:.0%}"),
    ("r_5deg", "R@5°", "{:.0%}"),
    ("failures", "failed", "{:d}"),
    ("runtime_median_s", "s/photo", "{:.2f}"),
)


@dataclass
class PhotoRecord:
    """One photo's outcome: errors are NaN when it failed or has no truth."""

    photo: str
    camera: str
    orientation: str            # "known" | "unknown"
    status: str                 # "ok" | "low_confidence" | "failed"
    pos_err_m: float
    heading_err_deg: float
    runtime_s: float
    confidence: float
    error: str = ""
    hfov_deg: float = math.nan  # pinholes: horizontal field of view, degrees
    place: str = ""             # kind of place (the manifest's style column), "" when unknown


def heading_error_deg(estimate_deg: float, truth_deg: float) -> float:
    """Absolute angular difference in [0, 180] degrees."""
    d = abs((estimate_deg - truth_deg) % 360.0)
    return min(d, 360.0 - d)


def position_error_m(result, true_xy, truth_crs) -> float:
    """Distance in true metres between the result's (x, y) in ``result.crs`` and ``true_xy`` in ``truth_crs``.

    Measured in a local frame centred on the truth, so it is metres whatever the CRS units.
    """
    if not result.ok:
        return math.nan
    frame = LocalFrame(truth_crs, true_xy)
    est = transform_points(np.array([[result.x, result.y]]), result.crs, truth_crs)
    return float(np.hypot(*frame.to_local(est)[0]))


def record_for(result, camera: str, heading_known: bool, true_xy, true_heading_deg, truth_crs,
               hfov_deg: Optional[float] = None, place: str = "") -> PhotoRecord:
    """Score one `Result` against its manifest truth (true_xy None -> errors NaN). hfov_deg: the pinhole's
    HFOV from the manifest (None: the one the result used); place: its kind of place."""
    pos = heading = math.nan
    if result.ok and true_xy is not None:
        pos = position_error_m(result, true_xy, truth_crs)
    if result.ok and true_heading_deg is not None and math.isfinite(true_heading_deg):
        heading = heading_error_deg(result.heading_deg, true_heading_deg)
    return PhotoRecord(photo=result.photo, camera=camera, orientation="known" if heading_known else "unknown",
                       status=result.status, pos_err_m=pos, heading_err_deg=heading,
                       runtime_s=float(result.runtime_s), confidence=float(result.confidence), error=result.error,
                       hfov_deg=float(hfov_deg if hfov_deg is not None else (result.hfov_deg or math.nan)),
                       place=place)


def _nan_stat(fn, values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(fn(values)) if values.size else math.nan


def _recall(errors: np.ndarray, threshold: float) -> float:
    """Fraction of all photos with error <= threshold; NaN (failed, no truth) counts as a miss."""
    if not errors.size:
        return math.nan
    return float(np.sum(np.nan_to_num(errors, nan=np.inf) <= threshold)) / errors.size


def summarize(name: str, records: Sequence[PhotoRecord]) -> Dict:
    """Statistics of one group of records (see module docstring for what counts where)."""
    pos = np.array([r.pos_err_m for r in records], np.float64)
    head = np.array([r.heading_err_deg for r in records], np.float64)
    return {
        "group": name, "count": len(records),
        "pos_mean_m": _nan_stat(np.mean, pos), "pos_median_m": _nan_stat(np.median, pos),
        "r_1m": _recall(pos, 1.0), "r_5m": _recall(pos, 5.0),
        "head_mean_deg": _nan_stat(np.mean, head), "head_median_deg": _nan_stat(np.median, head),
        "r_1deg": _recall(head, 1.0), "r_5deg": _recall(head, 5.0),
        "failures": sum(r.status == "failed" for r in records),
        "runtime_median_s": _nan_stat(np.median, np.array([r.runtime_s for r in records], np.float64)),
    }


def group_tables(records: Sequence[PhotoRecord]) -> Dict[str, List[Dict]]:
    """{"by_camera": rows per camera x orientation (+ all), "by_status": the same split by ok/low_confidence,
    "by_place": per kind of place, all photos and per camera x orientation (empty for one kind of place)}."""
    def key(r):
        return f"{r.camera} / {r.orientation}"

    by_camera, by_status = [], []
    for group in sorted({key(r) for r in records}):
        members = [r for r in records if key(r) == group]
        by_camera.append(summarize(group, members))
        for status in ("ok", "low_confidence"):
            subset = [r for r in members if r.status == status]
            if subset:
                by_status.append(summarize(f"{group} / {status}", subset))
    for orientation in ("known", "unknown"):
        wide = [r for r in records if r.camera == "pinhole" and r.orientation == orientation
                and r.hfov_deg >= WIDE_PINHOLE_DEG]
        if wide:
            by_camera.append(summarize(f"pinhole ≥{WIDE_PINHOLE_DEG:g}° / {orientation}", wide))
    if records:
        by_camera.append(summarize("all", records))
    by_place = []
    places = sorted({r.place for r in records if r.place})
    if len(places) > 1:
        for place in places:
            members = [r for r in records if r.place == place]
            by_place.append(summarize(place, members))
            by_place += [summarize(f"{place} / {group}", [r for r in members if key(r) == group])
                         for group in sorted({key(r) for r in members})]
    return {"by_camera": by_camera, "by_status": by_status, "by_place": by_place}


#: confidence bins of the reliability table: [lo, hi), the last one closed
CONFIDENCE_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0)


def reliability(records: Sequence[PhotoRecord]) -> Dict:
    """How far the confidence can be trusted: per confidence bin the photos, their mean confidence and the
    share within `HIT_RADIUS_M` (a calibrated confidence has the two equal), and the `ok` poses' precision.

    Returns {"bins": [{"bin", "count", "mean_confidence", "hit_rate"}], "ok": {"count", "within_5m",
    "beyond_10m", "worst_m"}}; failed photos are left out of the bins (they have no confidence).
    """
    scored = [r for r in records if r.status != "failed"]
    conf = np.array([r.confidence for r in scored], np.float64)
    hit = np.array([np.nan_to_num(r.pos_err_m, nan=np.inf) <= HIT_RADIUS_M for r in scored])
    bins = []
    for lo, hi in zip(CONFIDENCE_BINS[:-1], CONFIDENCE_BINS[1:]):
        m = (conf >= lo) & ((conf < hi) | (hi == CONFIDENCE_BINS[-1]))
        if m.any():
            bins.append({"bin": f"{lo:.1f}–{hi:.1f}", "count": int(m.sum()),
                         "mean_confidence": float(conf[m].mean()), "hit_rate": float(hit[m].mean())})
    ok_err = np.array([r.pos_err_m for r in scored if r.status == "ok"], np.float64)
    ok_err = np.nan_to_num(ok_err, nan=np.inf)
    return {"bins": bins, "ok": {"count": int(ok_err.size),
                                 "within_5m": float(np.mean(ok_err <= HIT_RADIUS_M)) if ok_err.size else math.nan,
                                 "beyond_10m": int(np.sum(ok_err > 10.0)),
                                 "worst_m": float(ok_err.max()) if ok_err.size else math.nan}}


def reliability_markdown(table: Dict) -> str:
    """The reliability table and the `ok` line as markdown."""
    lines = ["| confidence | n | mean confidence | within 5 m |", "|---|---:|---:|---:|"]
    lines += [f"| {b['bin']} | {b['count']} | {b['mean_confidence']:.2f} | {b['hit_rate']:.0%} |"
              for b in table["bins"]]
    ok = table["ok"]
    if ok["count"]:
        lines += ["", f"`ok`: {ok['count']} poses, {ok['within_5m']:.0%} within 5 m, {ok['beyond_10m']} beyond "
                      f"10 m (worst {ok['worst_m']:.1f} m)"]
    else:
        lines += ["", "`ok`: no poses"]
    return "\n".join(lines)


def markdown_table(rows: Iterable[Dict]) -> str:
    """GitHub markdown table of summary rows; NaN shows as an en dash."""
    lines = ["| " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|" + "|".join("---" if k == "group" else "---:" for k, _, _ in COLUMNS) + "|"]
    for row in rows:
        cells = []
        for k, _, fmt in COLUMNS:
            v = row[k]
            cells.append("–" if isinstance(v, float) and not math.isfinite(v) else fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def failure_reasons(records: Sequence[PhotoRecord], width: int = 90) -> List[str]:
    """"count × reason" lines for the failed photos, most frequent first.

    Reasons are the error's first clause with numbers replaced by "#" (so "28.0 m" and "26.9 m from the
    prior" count together), cut to ``width`` characters.
    """
    counts = Counter(re.sub(r"\d+(\.\d+)?", "#", r.error.split(":")[0])[:width]
                     for r in records if r.status == "failed")
    return [f"{n} × {reason}" for reason, n in counts.most_common()]


def report(records: Sequence[PhotoRecord], title: str = "") -> str:
    """Both tables as markdown, with a title line and the failure reasons."""
    tables = group_tables(records)
    parts = [f"### {title}" if title else "", markdown_table(tables["by_camera"]), "",
             "By status:", "", markdown_table(tables["by_status"])]
    if tables["by_place"]:
        parts += ["", "By kind of place:", "", markdown_table(tables["by_place"])]
    parts += ["", "Reliability of the confidence:", "", reliability_markdown(reliability(records))]
    reasons = failure_reasons(records)
    if reasons:
        parts += ["", "Failures:", ""] + [f"- {line}" for line in reasons]
    return "\n".join(parts).strip() + "\n"


def records_to_json(records: Sequence[PhotoRecord], config: Dict) -> Dict:
    """JSON-serialisable benchmark output: config, per-photo records (NaN -> None) and both tables."""
    def clean(d):
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}

    tables = group_tables(records)
    return {"config": config, "photos": [clean(asdict(r)) for r in records],
            "by_camera": [clean(r) for r in tables["by_camera"]],
            "by_status": [clean(r) for r in tables["by_status"]],
            "by_place": [clean(r) for r in tables["by_place"]],
            "reliability": reliability(records)}


def spread_subset(n_rows: int, limit: Optional[int]) -> List[int]:
    """Indices of at most ``limit`` rows spread evenly over ``n_rows`` (manifests are ordered by town and
    camera, so the first N rows would be one town's panoramas)."""
    if limit is None or limit >= n_rows:
        return list(range(n_rows))
    return sorted({int(i) for i in np.linspace(0, n_rows - 1, max(1, limit)).round()})


def run_bench(dataset_dir, localizer, limit: Optional[int] = None,
              progress: Optional[Callable[[int, int, PhotoRecord], None]] = None,
              on_result: Optional[Callable[[object, PhotoRecord], None]] = None) -> List[PhotoRecord]:
    """Localize the dataset's photos (``manifest.csv``, docs/manifest.md) and score them against the truth.

    Uses the batch loop's per-photo path (`batch.localize_job`), so the benchmark runs exactly what users
    run. progress(done, total, record) after each photo; on_result(result, record) sees the full `Result`
    (e.g. to calibrate the confidence on its quality numbers).
    """
    from .batch import localize_job, manifest_jobs
    from .manifest import read_manifest

    rows = read_manifest(os.path.join(os.fspath(dataset_dir), "manifest.csv"))
    rows = [rows[i] for i in spread_subset(len(rows), limit)]
    records = []
    for i, (row, job) in enumerate(zip(rows, manifest_jobs(rows))):
        result = localize_job(job, None, localizer)
        camera = row.camera if row.camera in ("pano", "pinhole") else (result.camera or "unknown")
        record = record_for(result, camera, row.heading_prior_deg is not None, row.true_xy,
                            row.true_heading_deg, row.crs, row.hfov_deg, place=row.extra.get("style", ""))
        records.append(record)
        if on_result is not None:
            on_result(result, record)
        if progress is not None:
            progress(i + 1, len(rows), record)
    return records
