"""Contact sheet of one synth town: orthophoto crop with the cameras, panoramas, pinholes and depth maps.

Usage: .venv/bin/python scripts/contact_sheet.py DATASET_DIR [--town NAME] [--out sheet.png] [--width 1600] [--panos 4] [--pinholes 6] [--palette]
       .venv/bin/python scripts/contact_sheet.py DATASET_DIR --overview [--out sheet.png] [--width 1600] [--palette]

``--overview``: one row per town instead (its whole orthophoto with the cameras, its first panorama and
first pinhole photo), to compare the towns of a dataset, e.g. the kinds of place of the heldout preset.

Reads the dataset through its manifest (docs/manifest.md), so it also checks that the manifest, the GeoTIFF
georeference, EXIF orientation and the depth files agree: each camera is drawn at its true position with a
short line along its true heading (converted to grid north for the map), and its prior as a cross.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from loc2_engine.georef import LocalFrame  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--town", help="town name (default: the first town of the manifest)")
    ap.add_argument("--out", default="contact_sheet.png")
    ap.add_argument("--width", type=int, default=1600, help="sheet width in pixels")
    ap.add_argument("--palette", action="store_true", help="save as a 256-colour PNG (small, for docs)")
    ap.add_argument("--panos", type=int, default=4, help="panoramas shown (two per row)")
    ap.add_argument("--pinholes", type=int, default=6, help="pinholes shown, each with its range map (three per row)")
    ap.add_argument("--overview", action="store_true",
                    help="one row per town: whole orthophoto with the cameras, first panorama, first pinhole")
    args = ap.parse_args(argv)
    with open(os.path.join(args.dataset, "manifest.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"{args.dataset}/manifest.csv has no rows")
    if args.overview:
        return _overview(args, rows)
    aerial = args.town and f"aerial/{args.town}.tif" or rows[0]["aerial"]
    rows = [r for r in rows if r["aerial"] == aerial]
    panos = [r for r in rows if r["camera"] == "pano"][: args.panos]
    pins = [r for r in rows if r["camera"] == "pinhole"][: args.pinholes]
    shown = panos + pins

    with rasterio.open(os.path.join(args.dataset, aerial)) as src:
        img = np.moveaxis(src.read(), 0, -1)
        tr, crs = src.transform, src.crs.to_string()
    txy = np.array([[float(r["true_x"]), float(r["true_y"])] for r in shown])
    pxy = np.array([[float(r["prior_x"]), float(r["prior_y"])] for r in shown])
    frame = LocalFrame(crs, txy.mean(0))
    # crop around the shown cameras (with 40 m margin), in pixel coordinates
    cols = (np.r_[txy[:, 0], pxy[:, 0]] - tr.c) / tr.a
    rws = (np.r_[txy[:, 1], pxy[:, 1]] - tr.f) / tr.e
    m = 40.0 / tr.a
    c0, c1 = int(max(cols.min() - m, 0)), int(min(cols.max() + m, img.shape[1]))
    r0, r1 = int(max(rws.min() - m, 0)), int(min(rws.max() + m, img.shape[0]))

    n_pano_rows, n_pin_rows = (len(panos) + 1) // 2, (len(pins) + 2) // 3
    heights = [2.2] + [1.0] * n_pano_rows + [0.85] * n_pin_rows
    fig = plt.figure(figsize=(args.width / 100, args.width / 100 / 4 * sum(heights)), dpi=100)
    gs = fig.add_gridspec(len(heights), 6, height_ratios=heights)
    ax = fig.add_subplot(gs[0, :3])
    ax.imshow(img[r0:r1, c0:c1], extent=(c0, c1, r1, r0))
    for i, r in enumerate(shown):
        c, rr = (txy[i, 0] - tr.c) / tr.a, (txy[i, 1] - tr.f) / tr.e
        h = np.radians(frame.true_to_grid_heading(float(r["true_heading_deg"]), txy[i]))
        ax.plot([c, c + 40 * np.sin(h)], [rr, rr - 40 * np.cos(h)], "-", color="yellow", lw=1.5)
        ax.plot(c, rr, "o", ms=5, color="red" if r["camera"] == "pano" else "cyan")
        ax.plot((pxy[i, 0] - tr.c) / tr.a, (pxy[i, 1] - tr.f) / tr.e, "x", color="white", ms=5)
        ax.text(c + 6, rr - 6, str(i), color="white", fontsize=8, weight="bold")
    ax.set_title(f"{aerial} ({crs}, {tr.a:.2f} m/px): true pose (dot + heading), prior (x)", fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])
    # depth of the first panorama next to the map
    if panos:
        d = np.load(os.path.join(args.dataset, panos[0]["depth"]))
        axd = fig.add_subplot(gs[0, 3:])
        im = axd.imshow(np.log10(np.clip(d, 0.5, None)), cmap="turbo", vmin=0, vmax=2.7)
        axd.set_title(f"range of #0 (log10 m; sky NaN = white): {np.nanmin(d):.1f}-{np.nanmax(d):.0f} m", fontsize=8)
        axd.set_xticks([]), axd.set_yticks([])
        fig.colorbar(im, ax=axd, fraction=0.02)
    for i, r in enumerate(panos):
        a = fig.add_subplot(gs[1 + i // 2, 3 * (i % 2):3 * (i % 2) + 3])
        a.imshow(ImageOps.exif_transpose(Image.open(os.path.join(args.dataset, r["photo"]))))
        a.set_title(_label(i, r), fontsize=8)
        a.set_xticks([]), a.set_yticks([])
    for j, r in enumerate(pins):
        k = len(panos) + j
        row, col = 1 + n_pano_rows + j // 3, 2 * (j % 3)
        a = fig.add_subplot(gs[row, col])
        a.imshow(ImageOps.exif_transpose(Image.open(os.path.join(args.dataset, r["photo"]))))
        a.set_title(_label(k, r), fontsize=7)
        a.set_xticks([]), a.set_yticks([])
        b = fig.add_subplot(gs[row, col + 1])
        b.imshow(np.load(os.path.join(args.dataset, r["depth"])), cmap="turbo", vmin=0, vmax=80)
        b.set_title("range 0-80 m", fontsize=7)
        b.set_xticks([]), b.set_yticks([])
    fig.tight_layout()
    _save(fig, args)
    return 0


def _save(fig, args) -> None:
    fig.savefig(args.out)
    plt.close(fig)
    if args.palette:
        Image.open(args.out).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(args.out, optimize=True)
    print(f"wrote {args.out}")


def _overview(args, rows) -> int:
    """One row per town (manifest order): orthophoto with every camera, first panorama, first pinhole."""
    towns = list(dict.fromkeys(r["aerial"] for r in rows))
    fig = plt.figure(figsize=(args.width / 100, args.width / 100 * len(towns) / 4.4), dpi=100)
    gs = fig.add_gridspec(len(towns), 3, width_ratios=[1.0, 2.0, 1.333])
    for i, aerial in enumerate(towns):
        mine = [r for r in rows if r["aerial"] == aerial]
        with rasterio.open(os.path.join(args.dataset, aerial)) as src:
            img = np.moveaxis(src.read(out_shape=(src.count, 512, 512)), 0, -1)  # an overview level: small
            tr, crs = src.transform, src.crs.to_string()
            scale = src.width / 512
        ax = fig.add_subplot(gs[i, 0])
        ax.imshow(img)
        for r in mine:
            c, rr = (float(r["true_x"]) - tr.c) / tr.a / scale, (float(r["true_y"]) - tr.f) / tr.e / scale
            ax.plot(c, rr, "o", ms=3, color="red" if r["camera"] == "pano" else "cyan")
        style = mine[0].get("style", "")
        ax.set_title(f"{os.path.basename(aerial)} ({style}, {crs})", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
        for col, kind in ((1, "pano"), (2, "pinhole")):
            shown = [r for r in mine if r["camera"] == kind][:1]
            a = fig.add_subplot(gs[i, col])
            if shown:
                a.imshow(ImageOps.exif_transpose(Image.open(os.path.join(args.dataset, shown[0]["photo"]))))
                a.set_title(_label(0, shown[0]).split(": ", 1)[-1], fontsize=7)
            a.set_xticks([]), a.set_yticks([])
    fig.tight_layout()
    _save(fig, args)
    return 0


def _label(i, r) -> str:
    hp = f", prior {float(r['heading_prior_deg']):.0f}±{float(r['heading_tolerance_deg']):.0f}°" \
        if r["heading_prior_deg"] else ""
    fov = f", hfov {float(r['hfov_deg']):.0f}°" if r["hfov_deg"] else ""
    extra = f", EXIF orientation {r['exif_orientation']}" if r.get("exif_orientation", "1") != "1" else ""
    return f"#{i} {r['camera']} {os.path.basename(r['photo'])}: heading {float(r['true_heading_deg']):.1f}° true{hp}{fov}{extra}"


if __name__ == "__main__":
    raise SystemExit(main())
