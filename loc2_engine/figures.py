"""One explanatory PNG per photo, drawn only from a `Result` (plus the photo's pixels and optional truth).

Three panels:
  1. the photo with its sampled matches, coloured by match probability, RANSAC inliers ringed;
  2. the aerial window with the aerial side of the matches (inliers coloured by weight, outliers grey);
  3. the aerial window with the ground layout (every valid lifted token placed by the estimated pose), the
     estimated pose and field of view, and the true pose when known.
Uses the object-oriented matplotlib API on an Agg canvas (no pyplot state, safe in threads and in QGIS).
Aerial panels are drawn in the window's local east-north metres, so arrows and layouts need no pixel maths.
"""

from __future__ import annotations

import math
import textwrap
from typing import Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .frustum import frustum_polygon
from .georef import transform_points

#: arrow length of the pose markers, metres on the aerial panels
ARROW_M = 6.0


def _window_extent(window) -> Sequence[float]:
    """imshow extent (left, right, bottom, top) of the aerial window in local metres (pixel edges)."""
    h, w = window.image.shape[:2]
    return (-w / 2 * window.gsd, w / 2 * window.gsd, -h / 2 * window.gsd, h / 2 * window.gsd)


def _pose_arrow(ax, xy, heading_deg, colour, label):
    dx, dy = ARROW_M * math.sin(math.radians(heading_deg)), ARROW_M * math.cos(math.radians(heading_deg))
    ax.plot([xy[0]], [xy[1]], "o", color=colour, markersize=6, markeredgecolor="black", label=label)
    ax.annotate("", xy=(xy[0] + dx, xy[1] + dy), xytext=(xy[0], xy[1]),
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=2))


def _load_photo(result) -> np.ndarray:
    from .ground import GroundImage  # only when the caller did not pass the pixels

    return GroundImage.load(result.photo, camera=result.camera or "auto",
                            hfov_deg=result.hfov_deg if math.isfinite(result.hfov_deg) else None).image


def draw_result(result, image: Optional[np.ndarray] = None, truth=None, frustum_range_m: float = 30.0) -> Figure:
    """Build the figure.

    image: (H, W, 3) uint8 photo as loaded (EXIF-rotated; the grid of ``result.uv_ground``), or None to load it.
    truth: None or (x, y, heading_deg, crs) of the true pose (heading from true north; NaN heading allowed).
    """
    if image is None:
        image = _load_photo(result)
    fig = Figure(figsize=(16, 5.4), dpi=100)
    FigureCanvasAgg(fig)
    ax_photo, ax_match, ax_layout = fig.subplots(1, 3, gridspec_kw=dict(width_ratios=[1.6, 1, 1]))
    title = f"{result.photo.rsplit('/', 1)[-1]}: {result.status}"
    if result.ok:
        title += (f"  conf {result.confidence:.2f}  inliers {result.inliers}/{result.matches}"
                  f"  heading {result.heading_deg:.1f}°  scale {result.scale:.2f}")
    else:
        title += f" — {result.error}"
    fig.suptitle(textwrap.fill(title, 170), fontsize=10)

    inl = result.inlier_mask.astype(bool) if result.inlier_mask.size else np.zeros(len(result.weights), bool)
    ax_photo.imshow(image)
    ax_photo.set_title("photo: matches (colour = probability), inliers ringed", fontsize=9)
    if len(result.uv_ground):
        sc = ax_photo.scatter(result.uv_ground[:, 0], result.uv_ground[:, 1], c=result.weights, s=8,
                              cmap="viridis", vmin=0)
        ax_photo.scatter(result.uv_ground[inl, 0], result.uv_ground[inl, 1], s=30, facecolors="none",
                         edgecolors="red", linewidths=0.8)
        fig.colorbar(sc, ax=ax_photo, fraction=0.025, pad=0.01)
    ax_photo.set_axis_off()

    window = result.window
    for ax in (ax_match, ax_layout):
        if window is not None:
            ax.imshow(window.image, extent=_window_extent(window), origin="upper")
        ax.set_xlabel("east (m)", fontsize=8)
        ax.set_ylabel("north (m)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_aspect("equal")
    ax_match.set_title("aerial: matched cells (inliers coloured)", fontsize=9)
    if len(result.xy_aerial):
        ax_match.scatter(result.xy_aerial[~inl, 0], result.xy_aerial[~inl, 1], s=4, c="lightgrey", alpha=0.6)
        ax_match.scatter(result.xy_aerial[inl, 0], result.xy_aerial[inl, 1], s=10, c=result.weights[inl],
                         cmap="viridis", vmin=0, edgecolors="red", linewidths=0.4)

    ax_layout.set_title("aerial: ground layout placed by the pose", fontsize=9)
    if result.ok and result.frame is not None:
        if len(result.layout_xy):
            ax_layout.scatter(result.layout_xy[:, 0], result.layout_xy[:, 1], s=3, c="cyan", alpha=0.7,
                              label="ground layout")
        pose_local = result.frame.to_local(np.array([[result.x, result.y]]))[0]
        ring = frustum_polygon(result, frustum_range_m)
        if ring is not None:
            ax_layout.plot(ring[:, 0], ring[:, 1], "-", color="orange", lw=1)
        _pose_arrow(ax_layout, pose_local, result.heading_deg, "orange", "estimate")
        _pose_arrow(ax_match, pose_local, result.heading_deg, "orange", "estimate")
    if truth is not None and result.frame is not None:
        tx, ty, theading, tcrs = truth
        true_local = result.frame.to_local(transform_points(np.array([[tx, ty]]), tcrs, result.frame.crs))[0]
        heading = theading if theading is not None and math.isfinite(theading) else None
        if heading is None:
            ax_layout.plot([true_local[0]], [true_local[1]], "o", color="lime", markeredgecolor="black",
                           label="truth")
        else:
            _pose_arrow(ax_layout, true_local, heading, "lime", "truth")
    if window is not None:
        left, right, bottom, top = _window_extent(window)
        for ax in (ax_match, ax_layout):
            ax.set_xlim(left, right)
            ax.set_ylim(bottom, top)
    if ax_layout.get_legend_handles_labels()[0]:
        ax_layout.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def save_figure(result, path, image: Optional[np.ndarray] = None, truth=None, frustum_range_m: float = 30.0):
    """Draw and write one PNG to ``path``; returns ``path``."""
    fig = draw_result(result, image=image, truth=truth, frustum_range_m=frustum_range_m)
    fig.savefig(path, format="png")
    return path
