"""Matching: similarity / τ, dustbin dual softmax with masked tokens, sampling without replacement ∝ P."""

import torch
import torch.nn.functional as F

from loc2_engine import matching


def _desc(B, C, N, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(B, C, N, generator=g), dim=1)


def test_similarity_is_cosine_over_tau():
    a, g = _desc(2, 8, 5, 0), _desc(2, 8, 7, 1)
    S = matching.similarity(a, g, 0.1)
    assert S.shape == (2, 5, 7)
    assert torch.allclose(S[1, 3, 4], (a[1, :, 3] @ g[1, :, 4]) / 0.1)
    assert S.abs().max() <= 10.0 + 1e-5


def test_dual_softmax_is_product_of_softmaxes_with_dustbin():
    S = torch.randn(1, 3, 4)
    alpha = torch.tensor(0.7)
    P = matching.dual_softmax(S, alpha)
    full = torch.full((1, 4, 5), 0.7)
    full[:, :3, :4] = S
    expected = (torch.softmax(full, 1) * torch.softmax(full, 2))[:, :3, :4]
    assert torch.allclose(P, expected)
    assert (P >= 0).all() and (P.sum(1) <= 1 + 1e-6).all() and (P.sum(2) <= 1 + 1e-6).all()


def test_invalid_ground_tokens_and_cells_get_zero_probability_and_dustbin_learns():
    S = torch.randn(2, 6, 5)
    alpha = torch.tensor(1.0, requires_grad=True)
    ground_valid = torch.tensor([[True, False, True, True, False]] * 2)
    aerial_valid = torch.ones(2, 6, dtype=torch.bool)
    aerial_valid[1, 2] = False
    P = matching.dual_softmax(S, alpha, ground_valid, aerial_valid)
    assert torch.isfinite(P).all()
    assert (P[:, :, ~ground_valid[0]] == 0).all()
    assert (P[1, 2] == 0).all()
    P.sum().backward()
    assert alpha.grad is not None and torch.isfinite(alpha.grad)


def test_all_tokens_invalid_gives_zero_not_nan():
    P = matching.dual_softmax(torch.randn(1, 4, 3), torch.tensor(1.0), torch.zeros(1, 3, dtype=torch.bool))
    assert torch.isfinite(P).all() and (P == 0).all()


def test_sampling_without_replacement_returns_weights_and_indices():
    P = torch.rand(3, 20, 30)
    P[:, :, :5] = 0.0  # never drawn while enough positive entries remain
    ia, ig, w = matching.sample_correspondences(P, 100, torch.Generator().manual_seed(0))
    assert ia.shape == ig.shape == w.shape == (3, 100)
    for b in range(3):
        pairs = set(zip(ia[b].tolist(), ig[b].tolist()))
        assert len(pairs) == 100  # no duplicates
    assert (ig >= 5).all()
    assert torch.equal(w, P[torch.arange(3)[:, None], ia, ig])


def test_sampling_frequencies_follow_p():
    # one draw per trial: the first pick of a draw without replacement has probability P / ΣP
    P = torch.tensor([[[0.1, 0.2], [0.3, 0.4]]]).expand(4000, 2, 2).contiguous()
    ia, ig, _ = matching.sample_correspondences(P, 1, torch.Generator().manual_seed(1))
    flat = (ia * 2 + ig).flatten()
    freq = torch.bincount(flat, minlength=4).float() / flat.numel()
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.03)


def test_sampling_is_seeded_differentiable_and_clips_n():
    P = torch.rand(1, 4, 3, requires_grad=True)
    a = matching.sample_correspondences(P, 50, torch.Generator().manual_seed(3))
    b = matching.sample_correspondences(P, 50, torch.Generator().manual_seed(3))
    assert a[0].shape == (1, 12)  # clipped to Na * Ng
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    a[2].sum().backward()
    assert torch.allclose(P.grad, torch.ones_like(P))  # every entry drawn once, gradient of w = P
