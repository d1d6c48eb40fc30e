#!/usr/bin/env python
"""Batch throughput: N synthetic photos end to end through `loc2_engine.batch.run_batch` into a GeoPackage.

Reports time per photo (Localizer run time and wall time including the GeoPackage write) and memory:
peak RSS (getrusage) and RSS after every photo, which
must stay flat (Results are not kept; the aerial feature cache is bounded): the mean and max RSS of the
first and the second half of the run are compared. --tracemalloc also tracks the
Python heap (slower: every allocation is traced). --workers N (N > 1) localizes on a local Dask cluster of N
worker processes, one torch thread each, as `loc2 batch --workers N` does (docs/cluster.md); the peak RSS of
every worker is reported then, and the RSS lines are the writing process's.

    .venv/bin/python -m loc2_engine synth data/bench --preset bench      # once
    .venv/bin/python scripts/bench_batch.py data/bench --n 100 [--model default] [--depth truth] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mb() -> float:
    """Current resident set size of this process, MB (from /proc; Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (getrusage; Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="dataset folder with manifest.csv (loc2 synth ... --preset bench)")
    parser.add_argument("--n", type=int, default=100, help="photos: the first N rows of the manifest")
    parser.add_argument("--model", default="default")
    parser.add_argument("--depth", default=None, help="depth provider (default: the model's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap (slower)")
    parser.add_argument("--out", help="GeoPackage to write (default: a temporary file)")
    parser.add_argument("--workers", type=int, default=1,
                        help="local Dask worker processes (default 1: localize in this process)")
    args = parser.parse_args(argv)

    import torch

    from loc2_engine.batch import manifest_jobs, output_crs, run_batch
    from loc2_engine.cluster import ClusterLocalizer
    from loc2_engine.gpkg import GeoPackageWriter
    from loc2_engine.manifest import read_manifest
    from loc2_engine.pipeline import Localizer

    manifest = Path(args.dataset) / "manifest.csv"
    if not manifest.is_file():
        print(f"no {manifest}; generate it with `loc2 synth {args.dataset} --preset bench`", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = read_manifest(manifest)
    if len(rows) < args.n:
        print(f"{manifest} has {len(rows)} photos, fewer than --n {args.n}", file=sys.stderr)
        return 2
    jobs = manifest_jobs(rows[: args.n])

    with ExitStack() as stack:  # the local cluster, when there is one, closes at the end
        t0 = time.perf_counter()
        settings = {"model": args.model, "depth": args.depth, "device": args.device}
        if args.workers > 1:
            localizer = stack.enter_context(ClusterLocalizer(settings, workers=args.workers))
        else:
            localizer = Localizer(**settings)
        load_s = time.perf_counter() - t0
        out = args.out or os.path.join(tempfile.mkdtemp(prefix="bench_batch_"), "bench.gpkg")
        crs = output_crs(jobs)
        if args.tracemalloc:
            tracemalloc.start()
        rss, heap, stamps = [], [], []
        start = time.perf_counter()

        def progress(done, total, result):
            stamps.append(time.perf_counter() - start)
            rss.append(rss_mb())
            heap.append(tracemalloc.get_traced_memory()[0] / 2**20 if args.tracemalloc else float("nan"))
            print(f"{done}/{total} {result.status:<15} {result.runtime_s:5.2f} s  rss {rss[-1]:7.1f} MB",
                  file=sys.stderr, flush=True)

        with GeoPackageWriter(out, crs) as writer:
            summary = run_batch(jobs, None, writer, localizer, progress=progress)
        worker_peaks = localizer.client.run(peak_rss_mb) if args.workers > 1 else {}
    heap_peak = tracemalloc.get_traced_memory()[1] / 2**20 if args.tracemalloc else float("nan")

    n = len(stamps)
    walls = [b - a for a, b in zip([0.0] + stamps[:-1], stamps)]
    print(f"photos               {n}  (ok {summary.ok}, low_confidence {summary.low_confidence}, "
          f"failed {summary.failed})")
    if args.workers > 1:
        print(f"model                {args.model}  depth {args.depth or 'the model default'}  device "
              f"{args.device}  {args.workers} worker processes, 1 torch thread each  (start and load {load_s:.1f} s)")
    else:
        print(f"model                {args.model}  depth {localizer.depth.name}  device {args.device}  "
              f"torch threads {torch.get_num_threads()}  (load {load_s:.1f} s)")
    print(f"Localizer s/photo    median {summary.median_runtime_s:.3f}  mean {statistics.fmean(summary.runtimes_s):.3f}")
    print(f"wall s/photo         median {statistics.median(walls):.3f}  mean {statistics.fmean(walls):.3f}  "
          f"(incl. GeoPackage write; total {stamps[-1]:.1f} s, {60 * n / stamps[-1]:.1f} photos/min)")
    print(f"RSS MB               after 1: {rss[0]:.0f}  after {n // 2}: {rss[n // 2 - 1]:.0f}  "
          f"after {n}: {rss[-1]:.0f}  peak (ru_maxrss): {peak_rss_mb():.0f}")
    first, second = rss[: n // 2], rss[n // 2:]
    print(f"RSS by half MB       photos 1..{n // 2}: mean {statistics.fmean(first):.0f} max {max(first):.0f}  |  "
          f"photos {n // 2 + 1}..{n}: mean {statistics.fmean(second):.0f} max {max(second):.0f}  "
          f"(flat = no growth with photo count; RSS swings with pano/pinhole image sizes)")
    for address, peak in sorted(worker_peaks.items()):
        print(f"worker peak RSS MB   {address}: {peak:.0f}")
    if args.tracemalloc:
        print(f"Python heap MB       after 1: {heap[0]:.1f}  after {n}: {heap[-1]:.1f}  peak {heap_peak:.1f}  "
              f"mean by half {statistics.fmean(heap[: n // 2]):.1f} | {statistics.fmean(heap[n // 2:]):.1f}")
    print(f"output               {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
