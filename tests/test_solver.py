"""Scale-aware weighted Procrustes: exact recovery (property test), SVD reference, gradients, degeneracy."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loc2_engine.solver import heading_from_rotation, procrustes_2d, rotation_from_heading

similarity = st.tuples(
    st.floats(0.0, 360.0, exclude_max=True),           # heading, degrees
    st.floats(0.1, 10.0),                               # scale
    st.floats(-100.0, 100.0), st.floats(-100.0, 100.0),  # translation, metres
    st.integers(0, 2**31 - 1),                          # seed of the source points
)


def _make(heading, scale, tx, ty, seed, n=30, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    src = (torch.rand(n, 2, generator=gen, dtype=dtype) - 0.5) * 40.0
    R = rotation_from_heading(torch.tensor(heading, dtype=dtype))
    t = torch.tensor([tx, ty], dtype=dtype)
    dst = scale * src @ R.T + t
    return src, dst, R, t


def _angle_diff(a, b):
    return (a - b + 180.0) % 360.0 - 180.0


@settings(max_examples=60, deadline=None)
@given(similarity)
def test_recovers_random_similarity_exactly(params):
    heading, scale, tx, ty, seed = params
    src, dst, R, t = _make(heading, scale, tx, ty, seed)
    fit = procrustes_2d(src[None], dst[None])
    assert bool(fit.ok[0]), fit.reason
    assert torch.allclose(fit.R[0], R, atol=1e-4)
    assert abs(float(fit.s[0]) - scale) <= 1e-4 * scale
    assert torch.allclose(fit.t[0], t, atol=1e-4)
    assert abs(_angle_diff(float(fit.heading_deg[0]), heading)) <= 1e-4


@settings(max_examples=30, deadline=None)
@given(similarity)
def test_recovers_random_similarity_float32(params):
    heading, scale, tx, ty, seed = params
    src, dst, R, t = _make(heading, scale, tx, ty, seed, dtype=torch.float32)
    fit = procrustes_2d(src[None], dst[None])
    assert bool(fit.ok[0]), fit.reason
    assert fit.R.dtype == torch.float32
    assert abs(_angle_diff(float(fit.heading_deg[0]), heading)) <= 1e-3
    assert abs(float(fit.s[0]) - scale) <= 1e-4 * scale
    assert torch.allclose(fit.t[0], t, atol=1e-3)


def _umeyama_svd(src, dst, w):
    """Textbook weighted Umeyama with SVD (numpy), dst ≈ s R src + t."""
    w_hat = w / w.sum()
    mg, ma = w_hat @ src, w_hat @ dst
    g, a = src - mg, dst - ma
    H = (w_hat[:, None] * g).T @ a
    U, S, Vt = np.linalg.svd(H)
    D = np.diag([1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    s = np.trace(np.diag(S) @ D) / (w_hat @ (g * g).sum(1))
    return R, s, ma - s * R @ mg


def test_matches_svd_umeyama_with_weights_and_noise():
    rng = np.random.default_rng(3)
    B, N = 5, 40
    src = rng.normal(size=(B, N, 2)) * 10
    dst = rng.normal(size=(B, N, 2)) * 3 + 2 * src @ rotation_from_heading(70.0).T
    w = rng.uniform(0, 1, size=(B, N))
    fit = procrustes_2d(torch.tensor(src), torch.tensor(dst), torch.tensor(w))
    for b in range(B):
        R, s, t = _umeyama_svd(src[b], dst[b], w[b])
        np.testing.assert_allclose(fit.R[b].numpy(), R, atol=1e-10)
        np.testing.assert_allclose(float(fit.s[b]), s, rtol=1e-10)
        np.testing.assert_allclose(fit.t[b].numpy(), t, atol=1e-9)


def test_without_scale_is_rigid():
    src, dst, R, t = _make(123.0, 1.0, 5.0, -7.0, 0)
    fit = procrustes_2d(src[None], 3.0 * dst[None], with_scale=False)
    assert float(fit.s[0]) == 1.0
    assert abs(_angle_diff(float(fit.heading_deg[0]), 123.0)) < 1e-9


def test_apply_batched_and_unbatched():
    src, dst, _, _ = _make(40.0, 2.5, 1.0, 2.0, 1)
    fit = procrustes_2d(src[None], dst[None])
    assert torch.allclose(fit.apply(src[None])[0], dst, atol=1e-9)
    assert torch.allclose(fit[0].apply(src), dst, atol=1e-9)


def test_gradients_flow_to_weights_and_points():
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(2, 6, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    dst = torch.randn(2, 6, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.rand(2, 6, generator=gen, dtype=torch.float64, requires_grad=True)

    def f(src, dst, w):
        fit = procrustes_2d(src, dst, w)
        return fit.R, fit.t, fit.s

    assert torch.autograd.gradcheck(f, (src, dst, w))


def test_gradient_finite_at_isotropic_points():
    """A square has equal singular values: SVD backward is singular there, the closed form is not."""
    src = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]], dtype=torch.float64)
    dst = (2 * src).requires_grad_(True)
    w = torch.ones(1, 4, dtype=torch.float64, requires_grad=True)
    fit = procrustes_2d(src, dst, w)
    (fit.R.sum() + fit.s.sum() + fit.t.sum()).backward()
    assert torch.isfinite(dst.grad).all() and torch.isfinite(w.grad).all()


def test_masked_nan_points_are_ignored_and_get_no_nan_gradient():
    src, dst, R, t = _make(10.0, 1.5, 3.0, 4.0, 2, n=8)
    src[0] = float("nan")
    w = torch.ones(1, 8, dtype=torch.float64)
    w[0, 0] = 0
    w.requires_grad_(True)
    fit = procrustes_2d(src[None], dst[None], w)
    assert bool(fit.ok[0])
    assert torch.allclose(fit.R[0], R, atol=1e-9)
    fit.s.sum().backward()
    assert torch.isfinite(w.grad).all()


P = [[0.0, 0.0], [4.0, 1.0], [2.0, 5.0], [-3.0, 2.0]]


@pytest.mark.parametrize("src,dst,w,reason", [
    ([[1.0, 2.0]], [[3.0, 4.0]], None, "fewer than two points"),
    ([[1.0, 2.0]] * 4, P, None, "distinct source"),
    (P, [[1.0, 2.0]] * 4, None, "distinct destination"),
    ([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [5.0, 5.0]], P, None, "source points are collinear"),
    (P, [[0.0, 1.0], [1.0, 3.0], [2.0, 5.0], [-1.0, -1.0]], None, "destination points are collinear"),
    ([[0.0, 0.0], [3.0, 0.0]], [[1.0, 1.0], [1.0, 4.0]], None, "collinear"),  # two points: a line
    (P, P, [0.0, 0.0, 0.0, 0.0], "fewer than two points"),
    (P, P, [1.0, 0.0, 0.0, 0.0], "fewer than two points"),
    ([[float("nan"), 0.0]] + P[1:], P, None, "non-finite"),
    (P, P, [1.0, float("nan"), 1.0, 1.0], "non-finite"),
    (P, P, [1.0, -1.0, 1.0, 1.0], "negative weights"),
])
def test_degenerate_inputs_fail_with_reason(src, dst, w, reason):
    src_t = torch.tensor([src], dtype=torch.float32)
    dst_t = torch.tensor([dst], dtype=torch.float32)
    w_t = None if w is None else torch.tensor([w], dtype=torch.float32)
    fit = procrustes_2d(src_t, dst_t, w_t)
    assert not bool(fit.ok[0])
    assert reason in fit.reason[0]
    assert torch.isnan(fit.R).all() and torch.isnan(fit.t).all() and torch.isnan(fit.s).all()


def test_batch_mixes_ok_and_degenerate():
    good_src, good_dst, _, _ = _make(30.0, 1.0, 0.0, 0.0, 5, n=4, dtype=torch.float32)
    src = torch.stack([good_src, torch.zeros(4, 2)])
    dst = torch.stack([good_dst, good_dst])
    fit = procrustes_2d(src, dst)
    assert fit.ok.tolist() == [True, False]
    assert fit.reason[0] == "" and "distinct source" in fit.reason[1]
    assert torch.isfinite(fit.R[0]).all()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="B, N, 2"):
        procrustes_2d(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="weights"):
        procrustes_2d(torch.zeros(1, 4, 2), torch.zeros(1, 4, 2), torch.ones(4))


def test_heading_convention():
    # heading 90 (east): the camera's forward axis (0, 1) maps to east (1, 0)
    R = rotation_from_heading(90.0)
    np.testing.assert_allclose(R @ [0.0, 1.0], [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(R @ [1.0, 0.0], [0.0, -1.0], atol=1e-12)  # right -> south
    h = torch.tensor([0.0, 45.0, 90.0, 180.0, 270.0, 359.0], dtype=torch.float64)
    back = heading_from_rotation(rotation_from_heading(h))
    assert torch.allclose(back, h, atol=1e-9)
    assert float(heading_from_rotation(rotation_from_heading(torch.tensor(-1e-9)))) < 360.0
    assert heading_from_rotation(rotation_from_heading(np.array([10.0, 200.0]))) == pytest.approx([10.0, 200.0])
    assert math.isclose(float(heading_from_rotation(rotation_from_heading(-90.0))), 270.0)
