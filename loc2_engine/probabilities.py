"""The matching stage: probabilities P of aerial cells x ground tokens, and the matches drawn from them.

P comes from the photo's camera kind's network (`Matcher.for_kind`), averaged over the test-time ensembles of
`config.MatchingConfig`: the east–west mirrored world (window and photo flipped, the answer flipped back) and
quarter turns of the aerial window (the photo, which does not know north, unchanged). The matcher is
equivariant to neither, and the members differ where it is unsure: how much they agree, and how much of the
photo the matcher dares to match at all, say when it is out of its depth (`Matches.agreement`,
`Matches.matched_share`, features of the confidence). A known-orientation view is never turned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .aerial import AerialWindow
from .cancel import checkpoint
from .config import MatchingConfig
from .errors import LocalizationError
from .feature_cache import AerialFeatureCache
from .matching import sample_correspondences
from .models.base import GroundFeatures, to_input
from .orientation import CanonicalView


@dataclass(frozen=True)
class Matches:
    """P (Na, Ng) float32 matching probabilities; cells_xy (Na, 2) the cells' centres, local metres; the N
    matches drawn from P: idx_a (N,), idx_g (N,) long, weights (N,) float32 (P at each). All on the CPU.

    agreement in (0, 1]: Σ over tokens of P's peak over Σ of the ensemble members' mean peak (1: every member
    puts its peak at the same cell; 1 without an ensemble); matched_share in [0, 1]: P's mass per token with
    depth (the rest is in the dustbin).
    """

    P: torch.Tensor
    cells_xy: torch.Tensor
    idx_a: torch.Tensor
    idx_g: torch.Tensor
    weights: torch.Tensor
    agreement: float
    matched_share: float


def matches_for(cache: AerialFeatureCache, window: AerialWindow, ground_in, valid: torch.Tensor,
                config: MatchingConfig, seed: int, view: CanonicalView = CanonicalView()) -> Matches:
    """P of ``window`` and the photo ``ground_in`` (`match_probabilities`), and ``config.n_matches`` drawn
    from it with the generator seeded by ``seed``.

    Raises LocalizationError when P's total mass (expected matches) is below ``config.min_expected_matches``:
    the photo and the window have nothing in common, and any pose would be a guess.
    """
    feats_a, _ = cache.get(window, view.aerial_turn_deg, kind=ground_in.content.camera.kind)
    P, member_peaks = _ensemble(cache, window, ground_in, valid, config, view)
    expected, needed = float(P.sum()), float(config.min_expected_matches)
    if expected < needed:
        raise LocalizationError(
            f"No usable matches between the photo and the aerial image: the matcher expects {expected:.1f} "
            f"matched image regions (at least {needed:g} are needed) and puts the rest in its "
            "dustbin; the photo may not show this place, or the aerial image may be too different.")
    generator = torch.Generator(device=P.device).manual_seed(int(seed))
    idx_a, idx_g, w = (t[0].cpu() for t in sample_correspondences(P, config.n_matches, generator))
    drawn = w > 0  # zero-probability pairs are only drawn when fewer than n_matches are positive
    peaks = float(member_peaks.sum())
    agreement = float(P.amax(dim=1).sum()) / peaks if peaks > 0 else 1.0
    return Matches(P[0].cpu().float(), feats_a.xy_local.detach().cpu().float(), idx_a[drawn], idx_g[drawn],
                   w[drawn].float(), min(agreement, 1.0), expected / max(int(valid.sum()), 1))


def match_probabilities(cache: AerialFeatureCache, window: AerialWindow, ground_in, valid: torch.Tensor,
                        config: MatchingConfig, view: CanonicalView = CanonicalView()) -> torch.Tensor:
    """P (1, Na, Ng) of ``window``'s cells and the ground tokens of ``ground_in`` (a `ground.ModelInput`), in
    the photo's token order; valid (Ng,) bool marks tokens with depth. ``config``: resolved (its ensembles
    set); view: how the inputs are turned (`search_area.canonical_view_for`)."""
    return _ensemble(cache, window, ground_in, valid, config, view)[0]


def _ensemble(cache: AerialFeatureCache, window: AerialWindow, ground_in, valid: torch.Tensor,
              config: MatchingConfig, view: CanonicalView):
    """`match_probabilities`'s P (1, Na, Ng), and its members' mean peak per token (1, Ng)."""
    kind = ground_in.content.camera.kind
    mirrors = (False, True) if config.mirror_tta else (False,)
    canonical = view.roll or view.aerial_turn_deg is not None
    quarters = range(1 if canonical else config.aerial_quarters)
    total, peaks = 0.0, 0.0
    for mirrored in mirrors:
        aerials = []
        for q in quarters:  # an aerial encoder pass each: where a cancel must not wait long (`cancel`)
            checkpoint()
            aerials.append(cache.get(window, view.aerial_turn_deg, mirrored, q, kind))
        P, member_peaks = _ground_probabilities(cache, aerials, ground_in, valid, view.roll, mirrored)
        total, peaks = total + P, peaks + member_peaks
    return total / len(mirrors), peaks / (len(mirrors) * len(quarters))


def _ground_probabilities(cache: AerialFeatureCache, aerials, ground_in, valid: torch.Tensor, roll: int,
                          mirrored: bool):
    """P (1, Na, Ng) of the photo's network averaged over ``aerials``, a list of (that network's aerial
    features, (1, Na) cell validity) of one window, and the sum of each member's peak per token (1, Ng).

    roll: columns the photo is rolled right (a known-orientation panorama); mirrored: the network sees the
    photo flipped left–right (with ``aerials`` of the flipped window) and its token descriptors are flipped
    back into the photo's token order.
    """
    kind = ground_in.content.camera.kind
    network = cache.matcher.for_kind(kind)
    x = to_input(ground_in.image).to(cache.device)  # (1, 3, H, W)
    if roll:
        x = torch.roll(x, roll, dims=-1)
    valid = valid.to(cache.device).reshape(1, -1)
    total = peaks = None
    with torch.no_grad():
        feats_g = network.encode_ground(x.flip(-1) if mirrored else x, kind)
        if mirrored:
            feats_g = GroundFeatures(feats_g.desc.flip(-1), feats_g.uv, feats_g.input_size)
        for feats_a, cell_valid in aerials:
            checkpoint()
            P = network.match(feats_a, feats_g, valid, cell_valid)  # (1, Na, Ng)
            total = P if total is None else total + P
            peaks = P.amax(dim=1) if peaks is None else peaks + P.amax(dim=1)
    return total / len(aerials), peaks
