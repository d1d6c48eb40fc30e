"""Camera models: pixel <-> unit ray, for 360° equirectangular panoramas and pinhole photos.

Pixel coordinates ``uv`` are (u right, v down) in pixel-index units: pixel (column u, row v) has its centre
at the integer point (u, v) and covers [u - 0.5, u + 0.5]. Rays are in the camera frame x right, y forward,
z up (docs/ENGINEERING.md), as unit vectors.

Panorama (W = 2H, full 360° × 180°): azimuth az = (u + 0.5) / W * 360 - 180 degrees clockwise from forward
(the centre column), elevation el = 90 - (v + 0.5) / H * 180 degrees; ray = (cos el sin az, cos el cos az,
sin el).
Pinhole (gravity-aligned, no pitch/roll): ray ∝ ((u - cx) / fx, 1, -(v - cy) / fy).

``ray_to_pixel`` returns ``(uv, valid)`` for both models; ``valid`` is False for zero or non-finite rays and,
for a pinhole, for rays not in front of the camera (y <= 0), whose uv are NaN.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch

from .errors import CameraError

#: relative tolerance on W = 2H for a panorama (resizing to even sizes can be off by a pixel)
PANO_ASPECT_TOLERANCE = 0.01

#: diagonal of the 36 × 24 mm frame, which defines the 35 mm-equivalent focal length (CIPA DC-004)
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)


def looks_like_panorama(width: int, height: int) -> bool:
    """True if a width × height image has the 2:1 aspect of a full equirectangular panorama."""
    return height > 0 and abs(width - 2 * height) <= PANO_ASPECT_TOLERANCE * width


def hfov_from_focal_35mm(focal_35mm: float, width: int, height: int) -> float:
    """Horizontal field of view (degrees) of a width × height photo from its 35 mm-equivalent focal (mm).

    The equivalent focal is defined on the diagonal: tan(dfov/2) = 43.27 / (2 f35); the horizontal half-angle
    follows from the image aspect: tan(hfov/2) = tan(dfov/2) * W / sqrt(W² + H²). For 3:2 photos this is the
    familiar 2 atan(36 / (2 f35)).
    """
    if not (focal_35mm and focal_35mm > 0 and math.isfinite(focal_35mm)):
        raise CameraError(f"The 35 mm-equivalent focal length {focal_35mm!r} mm is not a positive number.")
    if width <= 0 or height <= 0:
        raise CameraError(f"The image size {width} × {height} px is not valid.")
    tan_half_diag = FULL_FRAME_DIAGONAL_MM / (2.0 * focal_35mm)
    return math.degrees(2.0 * math.atan(tan_half_diag * width / math.hypot(width, height)))


def _check_uv(uv: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(uv) or uv.shape[-1:] != (2,):
        raise ValueError(f"uv must be a tensor of shape (..., 2), got {getattr(uv, 'shape', type(uv))}")
    return uv if uv.is_floating_point() else uv.to(torch.float32)


def _check_ray(ray: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(ray) or ray.shape[-1:] != (3,):
        raise ValueError(f"ray must be a tensor of shape (..., 3), got {getattr(ray, 'shape', type(ray))}")
    return ray if ray.is_floating_point() else ray.to(torch.float32)


class PanoramaCamera:
    """Full 360° × 180° equirectangular panorama of ``width`` × ``height`` px (width = 2 height)."""

    kind = "pano"

    def __init__(self, width: int, height: int):
        if not looks_like_panorama(width, height):
            raise CameraError(
                f"A 360° panorama must be twice as wide as it is high; this image is {width} × {height} px. "
                "Use --camera pinhole with --hfov for a normal photo."
            )
        self.width, self.height = int(width), int(height)

    def __repr__(self) -> str:
        return f"PanoramaCamera(width={self.width}, height={self.height})"

    def __eq__(self, other) -> bool:
        return isinstance(other, PanoramaCamera) and (self.width, self.height) == (other.width, other.height)

    @property
    def hfov_deg(self) -> float:
        return 360.0

    def resized(self, width: int, height: int) -> "PanoramaCamera":
        """The same panorama camera for the image resized to width × height px."""
        return PanoramaCamera(width, height)

    def pixel_to_ray(self, uv: torch.Tensor) -> torch.Tensor:
        """uv (..., 2) px -> unit rays (..., 3) in the camera frame (x right, y forward, z up)."""
        uv = _check_uv(uv)
        az = torch.deg2rad((uv[..., 0] + 0.5) / self.width * 360.0 - 180.0)
        el = torch.deg2rad(90.0 - (uv[..., 1] + 0.5) / self.height * 180.0)
        cos_el = torch.cos(el)
        return torch.stack([cos_el * torch.sin(az), cos_el * torch.cos(az), torch.sin(el)], dim=-1)

    def ray_to_pixel(self, ray: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """rays (..., 3) (any length) -> (uv (..., 2) px with u in [-0.5, W - 0.5), valid (...) bool)."""
        ray = _check_ray(ray)
        x, y, z = ray.unbind(-1)
        az = torch.rad2deg(torch.atan2(x, y))  # (-180, 180], 0 = forward, clockwise seen from above
        el = torch.rad2deg(torch.atan2(z, torch.hypot(x, y)))
        u = (az + 180.0) / 360.0 * self.width - 0.5
        u = torch.where(u >= self.width - 0.5, u - self.width, u)  # az = +180 is the left edge
        v = (90.0 - el) / 180.0 * self.height - 0.5
        valid = torch.isfinite(ray).all(-1) & (ray.norm(dim=-1) > 0)
        uv = torch.stack([u, v], dim=-1)
        return torch.where(valid[..., None], uv, torch.full_like(uv, float("nan"))), valid


class PinholeCamera:
    """Gravity-aligned pinhole camera: focal lengths fx, fy and principal point cx, cy in px (v down)."""

    kind = "pinhole"

    def __init__(self, width: int, height: int, fx: float, fy: float, cx: float, cy: float):
        if width <= 0 or height <= 0:
            raise CameraError(f"The image size {width} × {height} px is not valid.")
        if not (fx > 0 and fy > 0 and math.isfinite(fx) and math.isfinite(fy)):
            raise CameraError(f"The focal lengths fx={fx!r}, fy={fy!r} px must be positive numbers.")
        self.width, self.height = int(width), int(height)
        self.fx, self.fy, self.cx, self.cy = float(fx), float(fy), float(cx), float(cy)

    @classmethod
    def from_hfov(cls, width: int, height: int, hfov_deg: float) -> "PinholeCamera":
        """Square pixels, principal point at the image centre, horizontal FOV hfov_deg edge to edge."""
        if not (hfov_deg is not None and math.isfinite(hfov_deg) and 0.0 < hfov_deg < 180.0):
            raise CameraError(
                f"The horizontal field of view {hfov_deg!r}° is not usable for a pinhole photo; "
                "it must be between 0 and 180 degrees (pass --hfov, or use --camera pano for a 360° image)."
            )
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)

    def __repr__(self) -> str:
        return (f"PinholeCamera(width={self.width}, height={self.height}, fx={self.fx:.3f}, fy={self.fy:.3f}, "
                f"cx={self.cx:.3f}, cy={self.cy:.3f})")

    def __eq__(self, other) -> bool:
        return isinstance(other, PinholeCamera) and (
            self.width, self.height, self.fx, self.fy, self.cx, self.cy) == (
            other.width, other.height, other.fx, other.fy, other.cx, other.cy)

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view, edge to edge, degrees (for a centred principal point)."""
        return math.degrees(2.0 * math.atan((self.width / 2.0) / self.fx))

    @property
    def vfov_deg(self) -> float:
        """Vertical field of view, edge to edge, degrees (for a centred principal point)."""
        return math.degrees(2.0 * math.atan((self.height / 2.0) / self.fy))

    def resized(self, width: int, height: int) -> "PinholeCamera":
        """The same camera for the image resized to width × height px (pixel edges scale, centres shift)."""
        sx, sy = width / self.width, height / self.height
        return PinholeCamera(width, height, self.fx * sx, self.fy * sy,
                             (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5)

    def pixel_to_ray(self, uv: torch.Tensor) -> torch.Tensor:
        """uv (..., 2) px -> unit rays (..., 3) in the camera frame (x right, y forward, z up)."""
        uv = _check_uv(uv)
        x = (uv[..., 0] - self.cx) / self.fx
        z = -(uv[..., 1] - self.cy) / self.fy
        ray = torch.stack([x, torch.ones_like(x), z], dim=-1)
        return ray / ray.norm(dim=-1, keepdim=True)

    def ray_to_pixel(self, ray: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """rays (..., 3) -> (uv (..., 2) px, valid (...) bool); rays with y <= 0 are invalid, uv NaN.

        Valid uv may fall outside the image; compare with width/height to test visibility.
        """
        ray = _check_ray(ray)
        x, y, z = ray.unbind(-1)
        valid = torch.isfinite(ray).all(-1) & (y > 0)
        y_safe = torch.where(valid, y, torch.ones_like(y))
        uv = torch.stack([self.cx + self.fx * x / y_safe, self.cy - self.fy * z / y_safe], dim=-1)
        return torch.where(valid[..., None], uv, torch.full_like(uv, float("nan"))), valid
