"""Analytic and reference checks of the pure uncertainty functions and the streaming accumulator."""

from __future__ import annotations

import math

import pytest
import torch

from app.maps.functions import class_argmax, entropy, softmax_confidence, softmax_entropy
from app.maps.moments import StreamingMoments, finalize
from app.maps.registry import map_ranges


def _dirichlet(shape: tuple[int, ...], classes: int, concentration: float, seed: int) -> torch.Tensor:
    """Random probability vectors along dim -4 (the class dim) of ``(..., C, H, W)``."""
    gen = torch.Generator().manual_seed(seed)
    alpha = torch.full((classes,), concentration, dtype=torch.float64)
    gamma = torch._standard_gamma(alpha.expand(*shape, classes).contiguous(), generator=gen)
    probs = gamma / gamma.sum(-1, keepdim=True)
    return probs.movedim(-1, -3).float().contiguous()


def _stack(t: int, batch: int, classes: int, h: int, w: int, seed: int, concentration: float = 0.7) -> torch.Tensor:
    """``(T, B, C, H, W)`` random MC probabilities."""
    return _dirichlet((t, batch, h, w), classes, concentration, seed)


def _stream(stack: torch.Tensor, splits: list[int], shift: torch.Tensor | None = None) -> StreamingMoments:
    """Feed ``(T, B, C, H, W)`` samples into a fresh accumulator in sample-major chunks of the given sizes."""
    assert sum(splits) == stack.shape[0]
    moments = StreamingMoments(shift=shift)
    start = 0
    for size in splits:
        part = stack[start : start + size]
        moments.update(part.reshape(size * stack.shape[1], *stack.shape[2:]), size)
        start += size
    return moments


@pytest.mark.parametrize("classes", [2, 3, 7])
def test_uniform_probs_give_log_c_entropy_and_one_over_c_confidence(classes: int) -> None:
    """Uniform probabilities: entropy log C, confidence 1/C."""
    probs = torch.full((2, classes, 4, 5), 1.0 / classes)
    assert torch.allclose(entropy(probs), torch.full((2, 4, 5), math.log(classes)), atol=1e-6)
    assert torch.allclose(softmax_confidence(probs), torch.full((2, 4, 5), 1.0 / classes), atol=1e-7)
    assert entropy(probs).shape == (2, 4, 5)


def test_one_hot_gives_exactly_zero_entropy_and_full_confidence() -> None:
    """One-hot probabilities (with zeros): entropy exactly 0 (no NaN from 0 log 0), confidence 1."""
    labels = torch.tensor([[[0, 1, 2], [2, 1, 0]]])
    probs = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    h = entropy(probs)
    assert not torch.isnan(h).any()
    assert torch.equal(h, torch.zeros(1, 2, 3))
    assert torch.equal(softmax_confidence(probs), torch.ones(1, 2, 3))


def test_two_class_half_is_log_two_and_known_binary_entropy() -> None:
    """[0.5, 0.5] → log 2; [0.25, 0.75] → the closed-form binary entropy."""
    probs = torch.tensor([[[[0.5], [0.25]], [[0.5], [0.75]]]], dtype=torch.float64)
    h = entropy(probs).flatten()
    assert h[0].item() == pytest.approx(math.log(2), abs=1e-12)
    assert h[1].item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), abs=1e-12)


def test_confidence_is_max_over_classes_not_other_dims() -> None:
    """Confidence reduces over dim 1 only."""
    probs = torch.tensor([[[[0.2]], [[0.5]], [[0.3]]], [[[0.6]], [[0.1]], [[0.3]]]])
    assert softmax_confidence(probs).flatten().tolist() == pytest.approx([0.5, 0.6])


def test_map_ranges_are_the_documented_intervals() -> None:
    """Ranges are [1/C, 1], [0, log C], [0, 0.25] and, for the feature distance (a percentile among fit pixels), [0, 1]."""
    r = map_ranges(4)
    assert r["confidence"] == pytest.approx((0.25, 1.0))
    for name in ("entropy", "expected_entropy", "mutual_information"):
        assert r[name] == pytest.approx((0.0, math.log(4)))
    assert r["variance"] == pytest.approx((0.0, 0.25))
    assert r["feature_distance"] == pytest.approx((0.0, 1.0))
    assert set(r) == {"confidence", "entropy", "expected_entropy", "mutual_information", "variance", "feature_distance"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mutual_information_is_between_zero_and_predictive_entropy(seed: int) -> None:
    """0 ≤ MI ≤ H[p̄] ≤ log C on random Dirichlet samples, and MI matches the BALD formula."""
    stack = _stack(t=9, batch=2, classes=4, h=6, w=5, seed=seed, concentration=0.3)
    mean = stack.mean(0)
    expected_h = torch.stack([_ref_entropy(s) for s in stack]).mean(0).float()
    moments = StreamingMoments()
    moments.update(stack.reshape(-1, *stack.shape[2:]), copies=stack.shape[0])
    mi = finalize(mean, moments).mutual_information
    h_mean = _ref_entropy(mean).float()
    assert (mi >= 0).all()
    assert (mi <= h_mean + 1e-6).all()
    assert (h_mean <= math.log(4) + 1e-6).all()
    assert torch.allclose(mi, (h_mean - expected_h).clamp(min=0), atol=1e-5)
    assert mi.max() > 0.05


def _ref_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Independent entropy: −Σ p log p with the p = 0 terms removed by masking, in float64."""
    p = probs.double()
    logs = torch.where(p > 0, torch.log(p.clamp(min=1e-300)), torch.zeros_like(p))
    return -(p * logs).sum(1)


def test_mutual_information_clamps_rounding_negatives() -> None:
    """Expected entropy slightly above H[p̄] gives MI exactly 0, not negative."""
    mean = torch.full((1, 2, 1, 1), 0.5)
    moments = StreamingMoments()
    moments.update(mean, copies=1, entropies=torch.full((1, 1, 1), math.log(2) + 1e-4))
    mi = finalize(mean, moments).mutual_information
    assert torch.equal(mi, torch.zeros(1, 1, 1))


@pytest.mark.parametrize("splits", [[7], [1] * 7, [3, 4], [2, 2, 2, 1], [1, 5, 1]])
def test_streaming_matches_stacked_reference_for_any_chunking(splits: list[int]) -> None:
    """Streaming mean, variance, entropies and MI equal references computed from the stacked samples."""
    t, b, c, h, w = 7, 2, 3, 5, 4
    stack = _stack(t, b, c, h, w, seed=11)
    probs = _dirichlet((b, h, w), c, 1.0, seed=12)
    maps = finalize(probs, _stream(stack, splits))

    ref_mean = stack.double().mean(0)
    ref_pred = ref_mean.argmax(1)
    picked = stack.double().gather(2, ref_pred.unsqueeze(0).unsqueeze(2).expand(t, b, 1, h, w)).squeeze(2)
    ref_var = torch.var(picked, dim=0, unbiased=False)
    ref_class_var = torch.var(stack.double(), dim=0, unbiased=False)
    ref_expected_h = torch.stack([_ref_entropy(s) for s in stack]).mean(0)
    ref_h = _ref_entropy(ref_mean)

    assert maps.samples == t
    assert torch.equal(maps.prediction, ref_pred)
    assert torch.allclose(maps.mean_probs.double(), ref_mean, atol=1e-6)
    assert torch.allclose(maps.variance.double(), ref_var, atol=1e-6)
    assert torch.allclose(maps.class_variance.double(), ref_class_var, atol=1e-6)
    assert torch.allclose(maps.expected_entropy.double(), ref_expected_h, atol=1e-5)
    assert torch.allclose(maps.entropy.double(), ref_h, atol=1e-5)
    assert torch.allclose(maps.mutual_information.double(), (ref_h - ref_expected_h).clamp(min=0), atol=1e-5)
    assert torch.equal(maps.confidence, probs.amax(1))
    assert (maps.variance <= 0.25).all() and (maps.variance >= 0).all()
    assert maps.variance.max() > 0.01
    assert maps.variance.shape == (b, h, w) and maps.mean_probs.shape == (b, c, h, w)


def test_chunkings_agree_with_each_other() -> None:
    """Different chunk splits of the same samples give the same maps."""
    stack = _stack(6, 1, 4, 3, 3, seed=5)
    probs = _dirichlet((1, 3, 3), 4, 1.0, seed=6)
    a = finalize(probs, _stream(stack, [6]))
    b = finalize(probs, _stream(stack, [1, 2, 3]))
    for name, value in a.scalar_maps().items():
        assert torch.allclose(value, b.scalar_maps()[name], atol=1e-6), name
    assert torch.allclose(a.mean_probs, b.mean_probs, atol=1e-7)


def test_variance_reaches_quarter_for_bimodal_samples() -> None:
    """Samples alternating between one-hot class 0 and class 1 have variance exactly 0.25."""
    one = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    stack = torch.stack([one, one.flip(1), one, one.flip(1)])
    maps = finalize(one, _stream(stack, [4]))
    assert maps.variance.item() == pytest.approx(0.25, abs=1e-7)
    assert maps.mutual_information.item() == pytest.approx(math.log(2), abs=1e-6)
    assert maps.expected_entropy.item() == 0.0


def test_identical_samples_have_zero_variance_and_mi() -> None:
    """T identical samples: variance 0, MI 0, mean equals the sample."""
    sample = _dirichlet((1, 4, 4), 3, 1.0, seed=3)
    stack = sample.unsqueeze(0).expand(5, -1, -1, -1, -1).contiguous()
    maps = finalize(sample, _stream(stack, [2, 3]))
    assert torch.allclose(maps.variance, torch.zeros(1, 4, 4), atol=1e-7)
    assert torch.allclose(maps.mutual_information, torch.zeros(1, 4, 4), atol=1e-6)
    assert torch.allclose(maps.mean_probs, sample, atol=1e-7)


def test_zero_samples_fall_back_to_deterministic_probs() -> None:
    """T = 0 (None or an empty accumulator): MI 0, variance 0, mean_probs = probs, entropy = H[p]."""
    probs = _dirichlet((2, 3, 4), 3, 1.0, seed=4)
    for moments in (None, StreamingMoments()):
        maps = finalize(probs, moments)
        assert maps.samples == 0
        assert torch.equal(maps.mean_probs, probs)
        assert torch.equal(maps.mutual_information, torch.zeros(2, 3, 4))
        assert torch.equal(maps.variance, torch.zeros(2, 3, 4))
        assert torch.equal(maps.class_variance, torch.zeros_like(probs))
        assert torch.equal(maps.prediction, probs.argmax(1))
        assert torch.allclose(maps.entropy.double(), _ref_entropy(probs), atol=1e-6)
        assert torch.allclose(maps.expected_entropy, maps.entropy)


def test_update_rejects_chunk_not_divisible_by_copies() -> None:
    """A chunk whose rows are not copies × batch is an error."""
    with pytest.raises(ValueError, match="not 2 samples"):
        StreamingMoments().update(torch.full((3, 2, 1, 1), 0.5), 2)


def test_sample_major_layout_is_respected() -> None:
    """Rows are sample-major: with B=2, rows [0, 2] are image 0 and rows [1, 3] are image 1."""
    a = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    b = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)
    moments = StreamingMoments()
    moments.update(torch.cat([a, b, a, b]), 2)
    maps = finalize(torch.cat([a, b]), moments)
    assert maps.prediction.flatten().tolist() == [0, 1]
    assert torch.equal(maps.variance, torch.zeros(2, 1, 1))


def test_softmax_entropy_matches_reference_and_handles_extreme_logits() -> None:
    """softmax_entropy(z, τ) = (softmax(z/τ), H[softmax(z/τ)]); equal logits → log C; a huge gap → exactly 0, no NaN."""
    logits = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(9)) * 3
    probs, h = softmax_entropy(logits, temperature=2.0)
    ref = torch.softmax(logits.double() / 2.0, 1)
    assert torch.allclose(probs.double(), ref, atol=1e-6)
    assert torch.allclose(h.double(), _ref_entropy(ref), atol=1e-5)
    flat_p, flat_h = softmax_entropy(torch.zeros(1, 5, 2, 2))
    assert torch.allclose(flat_h, torch.full((1, 2, 2), math.log(5)), atol=1e-6)
    assert torch.allclose(flat_p, torch.full((1, 5, 2, 2), 0.2))
    _, sharp = softmax_entropy(torch.tensor([0.0, 200.0, -200.0]).view(1, 3, 1, 1))
    assert not torch.isnan(sharp).any()
    assert sharp.abs().max().item() < 1e-30


@pytest.mark.parametrize("splits", [[6], [2, 4], [1] * 6])
def test_shift_does_not_change_the_statistics(splits: list[int]) -> None:
    """Accumulating around a shift (the deterministic softmax) gives the same mean, variance and entropies."""
    stack = _stack(6, 2, 3, 4, 4, seed=21)
    probs = _dirichlet((2, 4, 4), 3, 1.0, seed=22)
    plain = finalize(probs, _stream(stack, [6]))
    shifted = finalize(probs, _stream(stack, splits, shift=probs))
    for name, value in plain.scalar_maps().items():
        assert torch.allclose(value, shifted.scalar_maps()[name], atol=2e-6), name
    assert torch.allclose(plain.mean_probs, shifted.mean_probs, atol=1e-6)
    assert torch.allclose(plain.class_variance, shifted.class_variance, atol=1e-6)


def test_shift_keeps_tiny_variances_accurate() -> None:
    """Samples 0.9 ± 1e-4 (variance ~1e-8): shifted streaming is accurate where Σp² − p̄² in float32 would cancel."""
    t = 50
    gen = torch.Generator().manual_seed(23)
    p0 = (0.9 + 1e-4 * torch.randn(t, 1, 1, 8, 8, generator=gen, dtype=torch.float64)).float()
    stack = torch.cat([p0, 1 - p0], dim=2)
    det = torch.tensor([0.9, 0.1]).view(1, 2, 1, 1).expand(1, 2, 8, 8).contiguous()
    maps = finalize(det, _stream(stack, [10] * 5, shift=det))
    ref = torch.var(stack.double(), dim=0, unbiased=False)
    assert ref.min() > 1e-9
    rel = ((maps.class_variance.double() - ref).abs() / ref).max().item()
    assert rel < 1e-3


def test_update_with_given_entropies_equals_computed() -> None:
    """Passing per-sample entropies to update gives the same expected entropy as letting it compute them."""
    stack = _stack(4, 1, 3, 3, 3, seed=31)
    rows = stack.reshape(4, 3, 3, 3)
    given = StreamingMoments()
    given.update(rows, 4, entropies=_ref_entropy(rows).float())
    computed = StreamingMoments()
    computed.update(rows, 4)
    assert torch.allclose(given.expected_entropy(), computed.expected_entropy(), atol=1e-6)
    assert torch.allclose(computed.expected_entropy().double(), _ref_entropy(rows).view(4, 1, 3, 3).mean(0), atol=1e-6)


def test_empty_accumulator_statistics_raise() -> None:
    """mean/variance/expected_entropy of an empty accumulator are errors, not zeros."""
    moments = StreamingMoments()
    for method in (moments.mean, moments.variance, moments.expected_entropy):
        with pytest.raises(ValueError, match="no samples"):
            method()


def test_class_argmax_equals_argmax_with_ties_to_the_first_class() -> None:
    probs = torch.rand(2, 5, 7, 9, generator=torch.Generator().manual_seed(0))
    probs[:, 3] = probs[:, 1]  # exact ties between classes 1 and 3
    probs[0, :, 0, 0] = 0.2  # a five-way tie
    assert torch.equal(class_argmax(probs), probs.argmax(1))
    assert torch.equal(class_argmax(probs, keepdim=True), probs.argmax(1, keepdim=True))
    assert int(class_argmax(probs)[0, 0, 0]) == 0
