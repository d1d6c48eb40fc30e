"""Lens distortion of the synthetic pinholes: the Brown-Conrady model (radial k1, k2; tangential p1, p2).

Coordinates are those of the nominal (undistorted) pinhole's image plane, principal point at 0, x right, y down,
in units of the image's half-diagonal: r = 1 in the corners whatever the field of view, so k1 + k2 is the
radial distortion there (-0.05: the corners drawn 5 % nearer the centre than a perfect pinhole draws them,
barrel). A point the perfect pinhole draws at (x, y) is drawn by the lens at

    x_d = x (1 + k1 r^2 + k2 r^4) + 2 p1 x y + p2 (r^2 + 2 x^2)
    y_d = y (1 + k1 r^2 + k2 r^4) + p1 (r^2 + 2 y^2) + 2 p2 x y,        r^2 = x^2 + y^2.

This is OpenCV's model with another unit of length: with c = half-diagonal / focal length (both in pixels),
OpenCV's coefficients are k1 / c^2, k2 / c^4, p1 / c, p2 / c.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np

#: k2 (radial, 4th order) and p1, p2 (decentring) are drawn from +- these: small next to k1, as in real lenses
K2_SPAN = 0.02
TANGENTIAL_SPAN = 0.001


@dataclass(frozen=True)
class Lens:
    k1: float
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    def distort(self, x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Undistorted (x, y) (any equal shapes, half-diagonal units) -> where the lens draws them."""
        r2 = x * x + y * y
        radial = 1.0 + r2 * (self.k1 + self.k2 * r2)
        return (x * radial + 2 * self.p1 * x * y + self.p2 * (r2 + 2 * x * x),
                y * radial + self.p1 * (r2 + 2 * y * y) + 2 * self.p2 * x * y)

    def undistort(self, xd: np.ndarray, yd: np.ndarray, tol: float = 1e-12,
                  max_iter: int = 20) -> Tuple[np.ndarray, np.ndarray]:
        """Distorted (x_d, y_d) (any equal shapes, half-diagonal units) -> the undistorted points the lens
        draws there, by Newton's method to ``tol``. Raises ValueError where the lens folds the image over (a
        coefficient too large for the field): no single ray is seen there."""
        xd, yd = np.asarray(xd, np.float64), np.asarray(yd, np.float64)
        r2 = xd * xd + yd * yd
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):   # a folding lens ends in the error
            x, y = (v / (1.0 + r2 * (self.k1 + self.k2 * r2)) for v in (xd, yd))  # radial only, drawn radius
            for _ in range(max_iter):
                ex, ey = self.distort(x, y)
                ex, ey = ex - xd, ey - yd
                err = max(np.max(np.abs(ex), initial=0.0), np.max(np.abs(ey), initial=0.0))
                if err < tol:
                    break
                (a, b), (c, d) = self._jacobian(x, y)
                det = a * d - b * c
                x, y = x - (d * ex - b * ey) / det, y - (a * ey - c * ex) / det
        if not err < tol or np.max(x * x + y * y, initial=0.0) >= self._fold_r2():
            raise ValueError(f"lens {self} cannot be inverted over the image (residual {err:.2g}): its distortion "
                             "folds the image over; use smaller coefficients")
        return x, y

    def _fold_r2(self) -> float:
        """r^2 beyond which the drawn radius r (1 + k1 r^2 + k2 r^4) stops growing with r (the image folds
        over there); inf where it never does."""
        s = np.roots([5.0 * self.k2, 3.0 * self.k1, 1.0])   # d r_d / d r = 1 + 3 k1 r^2 + 5 k2 r^4
        s = s[(np.abs(s.imag) < 1e-12) & (s.real > 0)].real
        return float(s.min()) if s.size else math.inf

    def _jacobian(self, x: np.ndarray, y: np.ndarray):
        """((dx_d/dx, dx_d/dy), (dy_d/dx, dy_d/dy)) of ``distort`` at (x, y)."""
        r2 = x * x + y * y
        radial = 1.0 + r2 * (self.k1 + self.k2 * r2)
        slope = 2.0 * (self.k1 + 2.0 * self.k2 * r2)   # d radial / d(r^2), times 2
        return ((radial + slope * x * x + 2 * self.p1 * y + 6 * self.p2 * x,
                 slope * x * y + 2 * self.p1 * x + 2 * self.p2 * y),
                (slope * x * y + 2 * self.p1 * x + 2 * self.p2 * y,
                 radial + slope * y * y + 6 * self.p1 * y + 2 * self.p2 * x))

    def nominal_pixels(self, uv: np.ndarray, cx: float, cy: float, half_diagonal_px: float) -> np.ndarray:
        """(N, 2) pixels (u, v) -> where the nominal (undistorted) pinhole draws the ray that this lens draws
        at each of them; pixel-index units (centres at integers), principal point (cx, cy), the image's
        half-diagonal ``half_diagonal_px`` pixels (the model's unit of length)."""
        uv = np.asarray(uv, np.float64)
        x, y = self.undistort((uv[:, 0] - cx) / half_diagonal_px, (uv[:, 1] - cy) / half_diagonal_px)
        return np.stack([cx + x * half_diagonal_px, cy + y * half_diagonal_px], -1)


def draw_lens(rng: np.random.Generator, k1_range: Tuple[float, float]) -> Lens:
    """A lens with k1 uniform in ``k1_range``, k2 in +-K2_SPAN, p1 and p2 in +-TANGENTIAL_SPAN."""
    return Lens(float(rng.uniform(*k1_range)), float(rng.uniform(-K2_SPAN, K2_SPAN)),
                float(rng.uniform(-TANGENTIAL_SPAN, TANGENTIAL_SPAN)),
                float(rng.uniform(-TANGENTIAL_SPAN, TANGENTIAL_SPAN)))
