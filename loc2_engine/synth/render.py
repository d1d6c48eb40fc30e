"""Ray caster (trimesh scene -> embreex) with per-hit shading: panoramas, pinholes and the orthophoto.

Why embreex: pip wheel only (no GL, no system state), deterministic, exact per-pixel Euclidean range for any
camera model (equirectangular rays are cast natively, no cube-map resampling), ~0.3-0.6 s per 512x1024
panorama on these CPUs (docs/synth.md has the measurements).

Frames: the town's local grid frame (x grid east, y grid north, z up, metres). Headings given to this module
are GRID headings (clockwise from grid north); dataset.py converts them to true north for the manifest.
Camera conventions follow docs/ENGINEERING.md: panorama column u -> azimuth (u + 0.5) / W * 360 - 180
clockwise from the heading, row v -> elevation 90 - (v + 0.5) / H * 180; pinhole x right, y forward, z up,
cx = W / 2, cy = H / 2, pixel centres at u + 0.5.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy import ndimage
from embreex import rtcore_scene as rtcs
from embreex.mesh_construction import TriangleMesh

from . import town as T
from .albedo import GroundAlbedo
from .lens import Lens
from .mesh import SceneMesh

AMBIENT = 0.42      # sky light on an upward-facing surface
SUN = 0.78          # direct sun on a surface facing the sun
OVERCAST_SKY_GAIN = 0.9  # extra sky light per unit of direct sun that clouds take away (a grey day is bright)
OVERCAST_GREY = np.array([0.72, 0.74, 0.77], np.float32)
HORIZON = np.array([0.83, 0.87, 0.92], np.float32)
ZENITH = np.array([0.42, 0.58, 0.84], np.float32)


def _hash(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray = None) -> np.ndarray:
    """Deterministic per-cell noise in [0, 1) from integer cell indices (any equal shapes)."""
    h = ix.astype(np.int64) * 73856093 ^ iy.astype(np.int64) * 19349663
    if iz is not None:
        h = h ^ iz.astype(np.int64) * 83492791
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).astype(np.float32) / 65536.0


def _cell_noise(p: np.ndarray, scale: float) -> np.ndarray:
    """Noise (N,) of 3-D points p (N, 3) on a grid of ``scale`` metres."""
    q = np.floor(p / scale)
    return _hash(q[:, 0], q[:, 1], q[:, 2])


def pano_rays(heading_deg: float, height: int, width: int) -> np.ndarray:
    """(H, W, 3) unit ray directions of an equirectangular panorama in the local grid frame."""
    az = (np.arange(width) + 0.5) / width * 360.0 - 180.0 + heading_deg
    el = 90.0 - (np.arange(height) + 0.5) / height * 180.0
    A, E = np.meshgrid(np.radians(az), np.radians(el))
    return np.stack([np.sin(A) * np.cos(E), np.cos(A) * np.cos(E), np.sin(E)], -1)


def pinhole_rays(heading_deg: float, hfov_deg: float, height: int, width: int, pitch_deg: float = 0.0,
                 roll_deg: float = 0.0, lens: Optional[Lens] = None) -> np.ndarray:
    """(H, W, 3) unit rays of a pinhole camera: optical axis at ``heading_deg`` tilted by pitch (up +),
    rolled by roll (clockwise as seen from behind the camera, +). ``hfov_deg`` is the nominal pinhole's;
    with a ``lens`` each pixel centre looks along the ray that the lens draws there (``lens.Lens``)."""
    f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    u = (np.arange(width) + 0.5 - width / 2) / f
    v = (np.arange(height) + 0.5 - height / 2) / f
    U, V = np.meshgrid(u, v)
    if lens is not None:
        c = math.hypot(width, height) / 2 / f   # the half-diagonal, the lens model's unit, over the focal length
        U, V = (a * c for a in lens.undistort(U / c, V / c))
    d = np.stack([U, np.ones_like(U), -V], -1)
    r, p, h = (math.radians(a) for a in (roll_deg, pitch_deg, heading_deg))
    roll = np.array([[math.cos(r), 0, math.sin(r)], [0, 1, 0], [-math.sin(r), 0, math.cos(r)]])
    pitch = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    yaw = np.array([[math.cos(h), math.sin(h), 0], [-math.sin(h), math.cos(h), 0], [0, 0, 1]])
    d = d @ (yaw @ pitch @ roll).T
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


class Renderer:
    """Casts rays into a SceneMesh and shades the hits with the town's sun and ground albedo."""

    def __init__(self, town: T.Town, mesh: SceneMesh, albedo: GroundAlbedo):
        self.town, self.mesh, self.albedo = town, mesh, albedo
        self.scene = rtcs.EmbreeScene()
        TriangleMesh(self.scene, mesh.triangles)
        self.normals = mesh.normals
        self.light(town)
        # clouds: periodic smooth noise on a plane 1 km up (a 25 km tile), coverage drawn per town
        crng = np.random.default_rng(town.seed + 5)
        noise = ndimage.gaussian_filter(crng.standard_normal((256, 256)), 6, mode="wrap")
        self.clouds = (noise / noise.std()).astype(np.float32)
        self.cloud_level = float(crng.uniform(0.3, 1.6))   # threshold in std units: higher = fewer clouds

    def light(self, town: T.Town) -> None:
        """Shade with ``town``'s sun (direction and strength): the photos may be lit apart from the orthophoto."""
        self.sun = town.sun_dir.astype(np.float32)
        self.sun_strength = float(town.sun_strength)

    def cast(self, origins: np.ndarray, dirs: np.ndarray):
        """origins, dirs (N, 3) -> (range (N,) float32 metres with NaN for no hit, face id (N,) int, -1 none)."""
        o = np.ascontiguousarray(origins, np.float32)
        d = np.ascontiguousarray(dirs, np.float32)
        res = self.scene.run(o, d, output=1)
        prim = res["primID"].astype(np.int64)
        t = res["tfar"].astype(np.float32)
        t[prim < 0] = np.nan
        return t, prim

    def shade(self, origins, dirs, t, prim, ground: GroundAlbedo = None, fine: bool = True) -> np.ndarray:
        """Colour (N, 3) float in [0, 1] of each ray; sky where prim < 0. ``fine`` adds sub-texel detail."""
        ground = ground or self.albedo
        n_rays = len(dirs)
        out = np.empty((n_rays, 3), np.float32)
        sky = prim < 0
        out[sky] = self._sky(dirs[sky])
        hit = ~sky
        if not hit.any():
            return out
        f = prim[hit]
        d = dirs[hit].astype(np.float32)
        p = origins[hit] + d * t[hit, None]
        n = self.normals[f]
        n = np.where((np.sum(n * d, 1) > 0)[:, None], -n, n)       # face the viewer
        mat = self.mesh.material[f]
        alb = self.mesh.rgb[f].copy()
        g = mat == T.GROUND
        if g.any():
            a = ground.lookup(p[g, 0], p[g, 1], self.town.base_rgb)
            if fine:
                a = a * (0.9 + 0.2 * _cell_noise(p[g], 0.05))[:, None]
            alb[g] = a
        w = mat == T.WALL
        if w.any():
            alb[w] = self._facade(p[w], self.mesh.facade[f[w]], alb[w])
        for m, scale, lo, amp in ((T.CANOPY, 0.35, 0.55, 0.8), (T.HEDGE, 0.15, 0.6, 0.6), (T.ROOF, 0.4, 0.88, 0.24),
                                  (T.TRUNK, 0.1, 0.8, 0.4)):
            k = mat == m
            if k.any():
                alb[k] *= (lo + amp * _cell_noise(p[k], scale))[:, None]
        alb[(mat == T.CABIN) & (np.abs(n[:, 2]) < 0.5)] = (0.08, 0.09, 0.11)   # car windows
        alb[mat == T.GLASS_BOX] = (0.2, 0.3, 0.35)
        ndl = np.clip(n @ self.sun, 0, None)
        lit = np.zeros(len(f), np.float32)
        facing = ndl > 0
        if facing.any():
            o = p[facing] + n[facing] * 0.03
            occl = self.scene.run(np.ascontiguousarray(o, np.float32),
                                  np.ascontiguousarray(np.broadcast_to(self.sun, o.shape), np.float32),
                                  query="OCCLUDED")
            lit[facing] = (occl < 0).astype(np.float32)
        sky_light = AMBIENT * (1.0 + OVERCAST_SKY_GAIN * (1.0 - self.sun_strength))
        light = sky_light * (0.7 + 0.3 * n[:, 2]) + SUN * self.sun_strength * ndl * lit
        col = alb * light[:, None]
        haze = (1.0 - np.exp(-t[hit] / 1800.0))[:, None]
        out[hit] = col * (1 - haze) + HORIZON * haze
        return np.clip(out, 0, 1)

    def _sky(self, d: np.ndarray) -> np.ndarray:
        el = np.clip(d[:, 2], 0, 1)[:, None]
        glow = np.clip(d @ self.sun, 0, 1)[:, None] ** 32 * 0.4 * self.sun_strength
        clear = HORIZON * (1 - el) + ZENITH * el + glow
        sky = clear * self.sun_strength + OVERCAST_GREY * (1.0 - self.sun_strength)
        # where the ray meets the cloud plane (1 km up), in texels of 100 m
        s = 10.0 / np.maximum(d[:, 2], 0.05)
        c = ndimage.map_coordinates(self.clouds, [d[:, 1] * s, d[:, 0] * s], order=1, mode="grid-wrap")
        cover = np.clip((c - self.cloud_level) * 1.5, 0, 1)[:, None] * np.clip(d[:, 2] * 8, 0, 1)[:, None]
        shade = 0.97 - 0.25 * np.clip((c - self.cloud_level - 0.5), 0, 1)[:, None]  # thick clouds are greyer
        return np.clip(sky * (1 - cover) + shade * cover, 0, 1)

    @staticmethod
    def _facade(p, fac, base):
        """Windows on a grid of storeys x bays along each wall face, counted up from the building's floor
        (``fac[:, 6]``); plain wall with grain elsewhere and below the floor (a plinth on a slope).
        A negative storey height gives the ground floor the upper storeys' windows (no shop windows), a
        window spacing of 0 a blank wall (mesh.py)."""
        u = (p[:, 0] - fac[:, 0]) * fac[:, 2] + (p[:, 1] - fac[:, 1]) * fac[:, 3]
        z = p[:, 2] - fac[:, 6]
        fh, bay = fac[:, 4], fac[:, 5]
        plain = blank = None
        if (fh < 0).any() or (bay <= 0).any():  # only the kinds of place use these; other towns skip the work
            plain, blank = fh < 0, bay <= 0
            fh, bay = np.abs(fh), np.where(blank, 1.0, bay)
        row = np.floor(z / fh)
        fz = z / fh - row
        fu = u / bay - np.floor(u / bay)
        ground_floor = row == 0
        if plain is not None:
            ground_floor = ground_floor & ~plain
        win = np.where(ground_floor, (fz > 0.12) & (fz < 0.8) & (fu > 0.12) & (fu < 0.88),
                       (fz > 0.3) & (fz < 0.78) & (fu > 0.25) & (fu < 0.75))
        frame = np.where(ground_floor, (fz > 0.09) & (fz < 0.83) & (fu > 0.09) & (fu < 0.91),
                         (fz > 0.27) & (fz < 0.81) & (fu > 0.22) & (fu < 0.78)) & ~win
        if blank is not None:
            win, frame = win & ~blank, frame & ~blank
        plinth = row < 0
        win, frame = win & ~plinth, frame & ~plinth
        q = np.c_[np.floor(u / bay), row, fac[:, 0]]
        glass_tone = 0.08 + 0.22 * _hash(q[:, 0], q[:, 1], np.floor(q[:, 2]))  # lights/reflections vary
        grain = 0.92 + 0.12 * _cell_noise(p, 0.08)
        out = base * grain[:, None]
        out[win] = np.c_[glass_tone, glass_tone * 1.1, glass_tone * 1.25][win]
        out[frame] = 0.85
        return out

    # --------------------------------------------------------------------------------------- cameras
    def render(self, position, dirs: np.ndarray, fine_dirs: np.ndarray = None):
        """position (3,) + rays (H, W, 3) -> (rgb (H, W, 3) float32 in [0, 1], range (H, W) float32, NaN sky).

        ``fine_dirs`` (k H, k W, 3): colour from these k x k sub-pixel rays, box-averaged (anti-aliasing);
        the range always comes from ``dirs`` (the pixel centres), so depth stays exact per pixel.
        """
        H, W = dirs.shape[:2]
        d = dirs.reshape(-1, 3).astype(np.float32)
        o = np.broadcast_to(np.asarray(position, np.float32), d.shape)
        t, prim = self.cast(o, d)
        if fine_dirs is None:
            return self.shade(o, d, t, prim).reshape(H, W, 3), t.reshape(H, W)
        k = fine_dirs.shape[0] // H
        fd = fine_dirs.reshape(-1, 3).astype(np.float32)
        fo = np.broadcast_to(np.asarray(position, np.float32), fd.shape)
        ft, fprim = self.cast(fo, fd)
        rgb = self.shade(fo, fd, ft, fprim).reshape(H, k, W, k, 3).mean(axis=(1, 3))
        return rgb, t.reshape(H, W)

    def panorama(self, position, heading_deg, height, width, supersample: int = 1):
        fine = pano_rays(heading_deg, height * supersample, width * supersample) if supersample > 1 else None
        return self.render(position, pano_rays(heading_deg, height, width), fine)

    def pinhole(self, position, heading_deg, hfov_deg, height, width, pitch_deg=0.0, roll_deg=0.0,
                supersample: int = 1, lens: Optional[Lens] = None):
        fine = pinhole_rays(heading_deg, hfov_deg, height * supersample, width * supersample, pitch_deg, roll_deg,
                            lens) if supersample > 1 else None
        return self.render(position, pinhole_rays(heading_deg, hfov_deg, height, width, pitch_deg, roll_deg, lens),
                           fine)

    def openness(self, position, heading_deg, hfov_deg) -> float:
        """Median range (m) over a coarse 8x12 grid of the pinhole view (to avoid photos of a wall)."""
        d = pinhole_rays(heading_deg, hfov_deg, 8, 12).reshape(-1, 3)
        t, _ = self.cast(np.broadcast_to(np.asarray(position, np.float32), d.shape), d)
        return float(np.median(np.nan_to_num(t, nan=1e4)))
