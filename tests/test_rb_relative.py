"""The head's kernels relative to class 0 against the full-class computation, and the factorised moments' fallback."""

from __future__ import annotations

import pytest
import torch

from app.engine.rb_head import GROUPED_KERNEL, RaoBlackwellHead
from app.maps.rao_blackwell import branch_factors, enumeration
from app.maps.rb_relative import SAFE_NORM, factorised_grouped_moments, relative_widest, tile_branches, with_reference_class


def _reference(z: torch.Tensor, log_s: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``P_t``, ``Q_t``, ``H_t`` of full-class logits ``(N, T, C, L)`` by softmax in float64."""
    branch = torch.softmax(z.double().unsqueeze(2) + log_s.double().unsqueeze(1), dim=3)
    w = weights.double().view(1, 1, -1, 1, 1)
    return (w * branch).sum(2), (w * branch.square()).sum(2), (w * torch.special.entr(branch)).sum(3).sum(2)


def _relative(parts: torch.Tensor) -> torch.Tensor:
    return parts[:, :, 1:] - parts[:, :, :1]


def test_reference_class_zeros_go_in_front() -> None:
    x = torch.arange(6.0).view(1, 2, 3)
    assert torch.equal(with_reference_class(x, 1), torch.tensor([[[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]]))


def test_relative_branches_equal_the_full_class_ones() -> None:
    """Softmax, channel choice, the other channels' parts and the branches' offsets: class 0 subtracted changes none."""
    gen = torch.Generator().manual_seed(3)
    parts, bias = 3 * torch.randn(2, 7, 5, 40, generator=gen), torch.randn(5, generator=gen)
    tau = torch.tensor(1.3)
    patterns, _ = enumeration(2, 0.8, parts.device)
    probs, rest, offsets = tile_branches(_relative(parts), bias[1:] - bias[0], patterns, tau, 2)
    torch.testing.assert_close(probs, torch.softmax((parts.sum(1) + bias.view(1, 5, 1)) / tau, dim=1))
    chosen = (parts.amax(2) - parts.amin(2)).topk(2, dim=1).indices  # the span over all classes
    assert torch.equal(relative_widest(_relative(parts), 2), chosen)
    full_rest, full_offsets = branch_factors(parts, chosen, patterns, 1.0 / tau)
    torch.testing.assert_close(rest.view(2, 7, 4, 40), _relative(full_rest.view(2, 7, 5, 40)))
    torch.testing.assert_close(offsets, full_offsets, atol=1e-5, rtol=1e-5)


def test_factorised_moments_equal_the_softmax_of_every_draw_and_branch() -> None:
    gen = torch.Generator().manual_seed(4)
    n, t, c, length, s = 3, 6, 5, 8, 4
    raw, bias = 4 * torch.randn(n, t, c - 1, length, generator=gen), torch.randn(c - 1, generator=gen)
    log_s = 5 * torch.randn(n, s, c, length, generator=gen)
    log_s = log_s - log_s.amax(2, keepdim=True)
    weights = torch.softmax(torch.randn(s, generator=gen), 0)
    tau = torch.tensor(0.9)
    p, q, h, smallest = factorised_grouped_moments(raw, bias, tau, log_s, weights, 3)
    z = with_reference_class((raw + bias.view(1, 1, -1, 1)) / tau, 2)
    ref = _reference(z, log_s, weights)
    for got, want in zip((p, q, h), ref, strict=True):
        grouped = want.view(n, 3, 2, *want.shape[2:]).sum(2)
        torch.testing.assert_close(got.double(), grouped, rtol=1e-5, atol=1e-6)
    assert float(smallest) >= SAFE_NORM


def test_logits_too_far_apart_for_the_factors_fall_back_to_direct_exponentials() -> None:
    """Draw logits (120, 0, 0) and branch offsets (0, 120, 0): every factor product underflows, the softmax is (½, ½, 0)."""
    masks, rest = torch.ones(1, 1, 1), torch.tensor([[[-120.0, -120.0]]])
    log_s = torch.tensor([-120.0, 0.0, -120.0]).view(1, 1, 3, 1)
    bias, tau, weights = torch.zeros(2), torch.tensor(1.0), torch.ones(1)
    *_, smallest = GROUPED_KERNEL(rest.view(1, 1, 2, 1), bias, tau, log_s, weights, 1)
    assert float(smallest) < SAFE_NORM
    p, q, h = RaoBlackwellHead._draws(masks, rest, log_s, bias, tau, weights, [1], 8, None)
    torch.testing.assert_close(p.view(3), torch.tensor([0.5, 0.5, 0.0]))
    torch.testing.assert_close(q.view(3), torch.tensor([0.25, 0.25, 0.0]))
    torch.testing.assert_close(float(h), 0.6931472, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("span", [46.0, 55.0, 68.0])
def test_factorised_moments_hold_where_logits_span_far_but_no_product_underflows(span: float) -> None:
    """Two classes, draw logits (0, s) and branch offsets (0, -s): each softmax (½, ½); the normaliser 2e^{-s} is small, never squared."""
    masks, rest = torch.ones(1, 1, 1), torch.tensor([[[span]]])
    log_s = torch.tensor([0.0, -span]).view(1, 1, 2, 1)
    bias, tau, weights = torch.zeros(1), torch.tensor(1.0), torch.ones(1)
    *_, smallest = factorised_grouped_moments(rest.view(1, 1, 1, 1), bias, tau, log_s, weights, 1)
    assert float(smallest) >= SAFE_NORM  # the factorised path is the one that runs
    p, q, h = RaoBlackwellHead._draws(masks, rest, log_s, bias, tau, weights, [1], 8, None)
    torch.testing.assert_close(p.view(2), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(q.view(2), torch.tensor([0.25, 0.25]))
    torch.testing.assert_close(float(h), 0.6931472, rtol=0.0, atol=span * 2e-7)
