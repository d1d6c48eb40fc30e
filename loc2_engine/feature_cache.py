"""An aerial window's features, encoded once and reused by every photo that shares the window.

The test-time ensembles (`probabilities`) encode each window several ways: turned for a known-orientation
view, mirrored east–west, turned by quarter turns, and by each camera kind's network. Each way is one cache
entry, keyed by the window's key and the way it was seen; the descriptors are turned and flipped back, so cell
i is the same place whatever the network saw. The plugin localizes from worker threads, hence the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional, Tuple

import numpy as np
import torch

from .aerial import AerialWindow
from .models.base import AerialFeatures, Matcher, to_input
from .orientation import turned_tile, unturn


class AerialFeatureCache:
    """Least-recently-used features of the last ``windows`` aerial windows, each seen in up to
    ``ways_per_window`` ways (ensemble members x networks)."""

    def __init__(self, matcher: Matcher, device: torch.device, windows: int, ways_per_window: int):
        self.matcher = matcher
        self.device = device
        self.capacity = max(1, int(windows)) * ways_per_window
        self._entries: "OrderedDict[str, Tuple[AerialFeatures, torch.Tensor]]" = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, window: AerialWindow, turn_deg: Optional[float] = None, mirrored: bool = False,
            quarters: int = 0, kind: Optional[str] = None) -> Tuple[AerialFeatures, torch.Tensor]:
        """Features of ``window`` and the (1, Na) validity of its cells (the raster has data at the cell's
        centre), as `encode_window` gives them; from the cache when this window was seen this way before."""
        network = self.matcher if kind is None else self.matcher.for_kind(kind)
        key = window.key if turn_deg is None else f"{window.key}|turned {turn_deg:.9g}"
        key += "|mirrored" if mirrored else ""
        key += f"|quarters {quarters}" if quarters else ""
        key += f"|{kind} expert" if network is not self.matcher else ""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        entry = encode_window(network, window, int(self.matcher.aerial_size_px), self.device, turn_deg, mirrored,
                              quarters)
        with self._lock:
            self._entries[key] = entry
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return entry


def encode_window(network: Matcher, window: AerialWindow, n: int, device: torch.device,
                  turn_deg: Optional[float] = None, mirrored: bool = False, quarters: int = 0
                  ) -> Tuple[AerialFeatures, torch.Tensor]:
    """``network``'s features of ``window`` (cells in the window's local frame, metres) and the (1, Na) bool
    validity of its cells.

    n: the network's tile side, px. turn_deg: the network sees the window's centre turned that many degrees
    clockwise (`orientation.turned_tile`), and its cells are turned back. mirrored: it sees the tile flipped
    east–west; quarters: then turned that many quarter turns counter-clockwise (exact on the square tile).
    """
    image = window.image if turn_deg is None else turned_tile(window, turn_deg, n)
    x = to_input(image).to(device)
    x = torch.rot90(x.flip(-1) if mirrored else x, quarters, dims=(-2, -1)).contiguous()
    with torch.no_grad():
        feats = network.encode_aerial(x)
    desc = torch.rot90(feats.desc, -quarters, dims=(-2, -1))
    feats = AerialFeatures((desc.flip(-1) if mirrored else desc).contiguous(), feats.xy_local)
    if turn_deg is not None:
        feats = AerialFeatures(feats.desc, unturn(feats.xy_local, turn_deg))
    rc = window.local_to_pixel(feats.xy_local.detach().cpu().numpy().astype(np.float64))
    h, w = window.valid.shape
    rows = np.clip(np.round(rc[:, 0]).astype(int), 0, h - 1)
    cols = np.clip(np.round(rc[:, 1]).astype(int), 0, w - 1)
    return feats, torch.from_numpy(window.valid[rows, cols]).to(device)[None]
