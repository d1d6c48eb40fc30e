"""The Localizer's settings: one frozen dataclass per stage, nested in `LocalizerConfig`.

A field left None means "the matcher's own" (`models.base.Matcher.inference_defaults`); `Localizer` resolves
those once, when it loads the matcher, so every stage reads plain values. Measurements behind the values are in
docs/evaluation.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Mapping, Optional

from . import defaults


@dataclass(frozen=True)
class PhotoConfig:
    """How a photo given as a path is read, and where an EXIF GPS prior lets the search go."""

    camera: str = defaults.CAMERA            # "auto" (from the image's shape and EXIF), "pano" or "pinhole"
    hfov_deg: Optional[float] = None         # a pinhole's horizontal field of view, degrees; None: from EXIF
    radius_m: float = defaults.RADIUS_M      # search radius around a prior read from EXIF, metres


@dataclass(frozen=True)
class LiftingConfig:
    """How ground tokens get depth and become bird's-eye-view points (`lifting.lift_tokens`)."""

    camera_height_m: Optional[float] = None  # camera above the ground for plane and relative depth; None: 1.6 m
    max_range_m: Optional[float] = None      # metric depth at or beyond it is masked; None: the matcher's own
                                             # clip (official models), else half the aerial window


@dataclass(frozen=True)
class MatchingConfig:
    """How the matching probabilities P are computed and drawn from (`probabilities`)."""

    mirror_tta: Optional[bool] = None        # average P with the east-west mirrored world's (test-time ensemble)
    aerial_quarters: Optional[int] = None    # average P over 1, 2 or 4 quarter turns of the aerial window
    n_matches: int = 4096                    # correspondences drawn from P for RANSAC
    min_expected_matches: float = 0.25       # below this total mass of P the photo and window share nothing
    cache_size: int = 8                      # aerial windows whose features are kept

    def __post_init__(self):
        if self.aerial_quarters not in (None, 1, 2, 4):
            raise ValueError(f"aerial_quarters must be 1, 2 or 4 (quarter turns that form a group), got "
                             f"{self.aerial_quarters!r}")


@dataclass(frozen=True)
class PoseConfig:
    """How the pose is solved from the matches and refitted to P (`pose.estimate_pose`)."""

    hypotheses: int = 20000                  # RANSAC's minimal samples
    th_inlier_m: float = 2.5                 # hard inlier distance, metres
    th_soft_m: float = 5.0                   # soft-score distance, metres
    ray_depth_rel: Optional[float] = None    # relative depth error of RANSAC's last refit (`refine`); 0: plain
                                             # Procrustes
    with_scale: bool = True                  # False: rigid fit (the "no scale" ablation)
    rivals: int = 8                          # RANSAC's runner-up poses refitted to P beside its best; 0: none


@dataclass(frozen=True)
class LocalizerConfig:
    """Every setting of `Localizer`, per stage; ``seed`` makes the draw from P and RANSAC reproducible."""

    photo: PhotoConfig = field(default_factory=PhotoConfig)
    lifting: LiftingConfig = field(default_factory=LiftingConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    seed: int = 0

    def with_overrides(self, **settings) -> "LocalizerConfig":
        """This config with settings named by their field (``hypotheses=500``, ``seed=1``), whatever stage
        they belong to; an unknown name is a TypeError naming the known ones."""
        stages = self._stages()
        changes = {name: {} for name in stages}
        top = {}
        for key, value in settings.items():
            owner = next((name for name, stage in stages.items() if key in _names(stage)), None)
            if owner is None and key != "seed":
                raise TypeError(f"unknown Localizer setting {key!r}; known: {sorted(self.setting_names())}")
            (changes[owner] if owner else top)[key] = value
        return replace(self, **top, **{name: replace(stages[name], **c) for name, c in changes.items() if c})

    def resolved(self, own: Mapping[str, object]) -> "LocalizerConfig":
        """This config with each field left None that ``own`` (the matcher's `inference_defaults`) names
        set to the matcher's value."""
        unset = {key: value for key, value in own.items()
                 if key in self.setting_names() and self.setting(key) is None}
        return self.with_overrides(**unset)

    def setting(self, name: str):
        """The value of the setting ``name``, whatever stage holds it (KeyError when none does)."""
        if name == "seed":
            return self.seed
        for stage in self._stages().values():
            if name in _names(stage):
                return getattr(stage, name)
        raise KeyError(name)

    def setting_names(self) -> set:
        return {"seed"}.union(*(_names(stage) for stage in self._stages().values()))

    def _stages(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "seed"}


def _names(stage) -> set:
    return {f.name for f in fields(stage)}
