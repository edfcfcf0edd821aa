"""The propagated (sampling-free) estimator: exact when every channel is enumerated, second order otherwise."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from test_rao_blackwell import exact_maps

from app.engine.augment import Augmentation
from app.engine.samplers import PropagatedTail, choose_sampler
from app.engine.sampling import SamplingOptions, run_mc
from app.io.bundle import Bundle
from app.maps.mc_error import mean_errors
from app.maps.propagation import propagated_moments


def _brute_force(parts: torch.Tensor, bias: torch.Tensor, keep: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``E p``, ``E p²``, ``E H(p)`` over all ``2^K`` keep masks, float64: ``parts`` ``(K, C, n)``."""
    k = parts.shape[0]
    keeps = torch.tensor(list(itertools.product([0.0, 1.0], repeat=k)), dtype=torch.float64)
    weights = torch.prod(keeps * keep + (1 - keeps) * (1 - keep), dim=1).view(-1, 1, 1)
    p = torch.softmax(torch.einsum("mk,kcn->mcn", keeps / keep, parts) + bias.view(1, -1, 1), dim=1)
    return (weights * p).sum(0), (weights * p * p).sum(0), (weights[:, :, 0] * torch.special.entr(p).sum(1)).sum(0)


def _parts(scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    return torch.randn(6, 3, 40, generator=gen, dtype=torch.float64) * scale, torch.randn(3, generator=gen, dtype=torch.float64)


def _error(scale: float, k: int, keep: float = 0.8) -> float:
    parts, bias = _parts(scale)
    _, mean, second, expected = propagated_moments(parts.unsqueeze(0), bias, k, keep)
    ref = _brute_force(parts, bias, keep)
    return max(float((a[0] - b).abs().max()) for a, b in zip((mean, second, expected), ref, strict=True))


def test_enumerating_every_channel_is_exact() -> None:
    parts, bias = _parts(2.0)
    _, mean, second, expected = propagated_moments(parts.unsqueeze(0), bias, 6, 0.7, 1.0)
    for got, ref in zip((mean, second, expected), _brute_force(parts, bias, 0.7), strict=True):
        torch.testing.assert_close(got[0], ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", [0, 2])
def test_the_truncation_error_is_third_order_in_the_propagated_channels(k: int) -> None:
    """Halving every channel's contribution divides the error by about 8 (third order); a first-order error would halve
    it, a second-order one (no correction term) quarter it."""
    ratio = _error(0.04, k) / _error(0.02, k)
    assert 6.0 < ratio < 10.0, ratio
    assert _error(0.02, k) < 1e-5


def test_the_engine_reports_a_noise_free_estimate_without_error_bars(tiny_bundle: Bundle) -> None:
    net = tiny_bundle.net
    x = torch.randn(1, 3, 16, 24, generator=torch.Generator().manual_seed(7))
    options = SamplingOptions(samples=20, seed=0, estimator="propagated", enumerated=8)
    assert isinstance(choose_sampler(net, Augmentation(), options), PropagatedTail)
    maps = run_mc(net, x, options)
    again = run_mc(net, x, SamplingOptions(samples=20, seed=99, estimator="propagated", enumerated=8))
    assert maps.estimator == "propagated" and maps.replicates is None
    torch.testing.assert_close(maps.mutual_information, again.mutual_information, rtol=0, atol=0)
    exact = exact_maps(net, x)
    for name in ("mutual_information", "entropy", "variance"):
        torch.testing.assert_close(getattr(maps, name)[0].double(), exact[name], rtol=1e-4, atol=2e-6)
    assert mean_errors(["mutual_information"], None, maps.samples)["mutual_information"] is None


def test_large_propagated_perturbations_stay_in_the_valid_range() -> None:
    """Channels of sd 2 nats at keep 0.5 push the second-order terms far out; the moments stay probabilities."""
    gen = torch.Generator().manual_seed(8)
    parts, bias = torch.randn(1, 16, 5, 500, generator=gen) * 2.0, torch.randn(5, generator=gen)
    _, mean, second, expected = propagated_moments(parts, bias, 3, 0.5)
    assert float(mean.min()) >= 0.0 and torch.allclose(mean.sum(1), torch.ones(1, 500))
    assert float(second.min()) >= 0.0 and bool((second <= mean + 1e-7).all())
    assert float(expected.min()) >= 0.0 and float(expected.max()) <= math.log(5) + 1e-6
