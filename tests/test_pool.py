"""The pool of an analysis's passes: p from the first pass, draws mapped back to the input frame, exact analytic values."""

from __future__ import annotations

import math

import pytest
import torch

from app.engine.augment import Augmentation
from app.engine.pool import PassPool
from app.maps.moments import StreamingMoments

IDENTITY, FLIP = Augmentation(), Augmentation(flip_h=True, flip_v=True)


def _logits(seed: int = 0) -> torch.Tensor:
    return 4 * torch.randn(1, 3, 4, 6, generator=torch.Generator().manual_seed(seed))


def test_one_pass_without_samples_is_the_deterministic_softmax() -> None:
    pool = PassPool(passes=1, samples=0, groups=0, temperature=1.0)
    assert pool.needs_deterministic
    pool.deterministic(0, IDENTITY, torch.zeros(1, 2, 3, 3))
    maps = pool.result()
    assert maps.samples == 0 and maps.replicates is None
    assert torch.allclose(maps.entropy, torch.full((1, 3, 3), math.log(2)))  # H[0.5, 0.5] = log 2
    assert torch.equal(maps.mutual_information, torch.zeros(1, 3, 3))


def test_passes_that_agree_after_mapping_back_have_zero_mi() -> None:
    """T = 0: twin passes draw exactly p twice (MI exactly 0); a flipped pass of the flipped logits is mapped back onto p."""
    logits = _logits()
    for aug, pass_logits, atol in ((IDENTITY, logits, 0.0), (FLIP, logits.flip(-2, -1), 1e-6)):
        pool = PassPool(passes=2, samples=0, groups=0, temperature=1.0)
        pool.deterministic(0, IDENTITY, logits)
        assert pool.needs_deterministic  # with T = 0 every pass's deterministic softmax is a draw
        pool.deterministic(1, aug, pass_logits)
        maps = pool.result()
        assert maps.samples == 2
        torch.testing.assert_close(maps.mutual_information, torch.zeros_like(maps.mutual_information), atol=atol, rtol=0)
        torch.testing.assert_close(maps.mean_probs, torch.softmax(logits, 1), atol=atol, rtol=0)


def test_samples_are_pooled_in_the_input_frame_with_their_mean_and_entropy() -> None:
    """Two MC samples of one pass: p̄ is their mean and the expected entropy the mean of their entropies."""
    det, a, b = _logits(0), _logits(1), _logits(2)
    pool = PassPool(passes=2, samples=1, groups=0, temperature=2.0)
    pool.deterministic(0, IDENTITY, det)
    assert not pool.needs_deterministic and pool.classes == 3 and pool.size == (4, 6)
    pool.add_samples(IDENTITY, range(1), a)
    pool.add_samples(FLIP, range(1), b.flip(-2, -1))
    maps = pool.result()
    pa, pb = torch.softmax(a / 2, 1), torch.softmax(b / 2, 1)
    torch.testing.assert_close(maps.mean_probs, (pa + pb) / 2, atol=1e-6, rtol=0)
    h = [torch.special.entr(p).sum(1) for p in (pa, pb)]
    torch.testing.assert_close(maps.expected_entropy, (h[0] + h[1]) / 2, atol=1e-6, rtol=0)
    torch.testing.assert_close(maps.probs, torch.softmax(det / 2, 1))


def test_only_a_single_pass_hands_over_finished_statistics() -> None:
    p = torch.softmax(_logits(), 1)
    with pytest.raises(ValueError, match="single-pass"):
        PassPool(passes=2, samples=3, groups=0, temperature=1.0).adopt(p, StreamingMoments(p), None)
    with pytest.raises(ValueError, match="deterministic"):
        PassPool(passes=1, samples=3, groups=0, temperature=1.0).add_samples(IDENTITY, range(1), _logits())
