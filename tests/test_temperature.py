"""Temperature scaling recovers a known temperature and never changes the prediction."""

from __future__ import annotations

import math

import pytest
import torch

from app.metrics.temperature import LogitPool, fit_temperature, nll_at


def _tempered(tau: float, n: int = 60_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 5, generator=gen) * 3
    labels = torch.multinomial(torch.softmax(logits / tau, 1), 1, generator=gen).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_fit_recovers_the_generating_temperature(tau: float) -> None:
    logits, labels = _tempered(tau)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(tau, rel=0.05)
    assert nll_at(logits, labels, fitted) <= nll_at(logits, labels, 1.0)


def test_log_probabilities_give_the_same_fit_as_logits() -> None:
    logits, labels = _tempered(1.6, seed=2)
    log_probs = torch.log_softmax(logits, 1)
    assert fit_temperature(log_probs, labels) == pytest.approx(fit_temperature(logits, labels), rel=1e-3)


def test_scaling_never_changes_the_argmax() -> None:
    logits, _ = _tempered(1.0, n=10_000, seed=4)
    for tau in (0.05, 0.3, 1.7, 20.0):
        assert torch.equal(torch.softmax(logits / tau, 1).argmax(1), logits.argmax(1))


def test_nll_at_is_the_cross_entropy() -> None:
    logits, labels = _tempered(1.0, n=1_000, seed=5)
    assert nll_at(logits, labels, 2.0) == pytest.approx(float(torch.nn.functional.cross_entropy(logits / 2.0, labels)), rel=1e-5)


def test_pool_subsamples_at_its_rate_and_refuses_empty() -> None:
    pool = LogitPool(rate=0.25, seed=1)
    probs = torch.full((40_000, 3), 1 / 3)
    pool.add(probs, torch.zeros(40_000, dtype=torch.long))
    lp, lab = pool.tensors()
    assert abs(lp.shape[0] - 10_000) < 400
    assert torch.allclose(lp, torch.full_like(lp, math.log(1 / 3)))
    assert lab.shape[0] == lp.shape[0]
    with pytest.raises(ValueError, match="no labelled pixels"):
        fit_temperature(torch.empty(0, 3), torch.empty(0, dtype=torch.long))
