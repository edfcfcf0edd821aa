"""Calibration and detection metrics against independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torchmetrics.functional.classification import multiclass_calibration_error

from app.metrics.calibration import CalibrationStats
from app.metrics.detection import DetectionStats


def _data(n: int = 20_000, c: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=gen) * 2.5
    probs = torch.softmax(logits, 1)
    labels = torch.multinomial(torch.softmax(logits / 1.7, 1), 1, generator=gen).squeeze(1)
    return probs, labels


def test_ece_and_mce_match_torchmetrics_and_stream() -> None:
    probs, labels = _data()
    stats = CalibrationStats()
    for part in range(0, probs.shape[0], 3_000):
        stats.update(probs[part : part + 3_000], labels[part : part + 3_000])
    res = stats.result()
    ece = float(multiclass_calibration_error(probs, labels, num_classes=4, n_bins=15, norm="l1"))
    mce = float(multiclass_calibration_error(probs, labels, num_classes=4, n_bins=15, norm="max"))
    assert res.ece == pytest.approx(ece, abs=1e-5)
    assert res.mce == pytest.approx(mce, abs=1e-5)
    assert res.ece > 0.02
    assert sum(res.reliability.count) == probs.shape[0]


def test_nll_brier_accuracy_against_direct_formulas() -> None:
    probs, labels = _data(5_000, 3, seed=1)
    stats = CalibrationStats()
    stats.update(probs, labels)
    res = stats.result()
    onehot = torch.nn.functional.one_hot(labels, 3).double()
    assert res.nll == pytest.approx(float(torch.nn.functional.nll_loss(probs.double().log(), labels)), rel=1e-9)
    assert res.brier == pytest.approx(float(((probs.double() - onehot) ** 2).sum(1).mean()), rel=1e-9)
    assert res.accuracy == pytest.approx(float((probs.argmax(1) == labels).double().mean()))


def test_perfectly_calibrated_one_hot_has_zero_ece() -> None:
    labels = torch.tensor([0, 1, 2, 1])
    stats = CalibrationStats()
    stats.update(torch.nn.functional.one_hot(labels, 3).float(), labels)
    res = stats.result()
    assert res.ece == 0.0 and res.nll == pytest.approx(0.0, abs=1e-9) and res.brier == 0.0


def test_auroc_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    flags = rng.random(50_000) < 0.2
    scores = np.clip(rng.normal(0.4 + 0.25 * flags, 0.2), 0, 1)
    stats = DetectionStats()
    for part in range(0, flags.size, 7_000):
        stats.update(torch.from_numpy(scores[part : part + 7_000]), torch.from_numpy(flags[part : part + 7_000]))
    assert stats.exact
    assert stats.auroc() == pytest.approx(roc_auc_score(flags, scores), abs=1e-9)


def test_auroc_ties_and_degenerate_cases() -> None:
    stats = DetectionStats()
    stats.update(torch.tensor([0.5, 0.5, 0.9, 0.1]), torch.tensor([True, False, True, False]))
    assert stats.auroc() == pytest.approx(roc_auc_score([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.1]))
    only_pos = DetectionStats()
    only_pos.update(torch.tensor([0.3]), torch.tensor([True]))
    assert only_pos.auroc() is None
    assert DetectionStats().aurc() is None
    with pytest.raises(ValueError, match="NaN"):
        DetectionStats().update(torch.tensor([0.1, float("nan")]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="max_distinct"):
        DetectionStats(max_distinct=3)


def test_negative_zero_ties_with_zero_and_order_follows_values() -> None:
    """-0.0 and 0.0 are one value; negative, tiny and huge scores keep their numeric order."""
    values = np.array([-0.0, 0.0, -1e-30, 1e-30, -3.0, 2.5, np.float32(1 - 1e-7), 1.0, 1e300, -1e300])
    flags = np.array([True, False, True, False, False, True, True, False, True, False])
    stats = DetectionStats()
    stats.update(values, flags)
    assert stats.distinct == len(values) - 1
    assert stats.auroc() == pytest.approx(roc_auc_score(flags, values), abs=1e-12)
    assert stats.aurc() == pytest.approx(_aurc_reference(values, flags), abs=1e-12)


def _aurc_reference(scores: np.ndarray, errors: np.ndarray) -> float:
    """Risk–coverage by sorting, in float64: within a tie group the errors are spread evenly over its positions."""
    values, group, counts = np.unique(np.asarray(scores, dtype=np.float64) + 0.0, return_inverse=True, return_counts=True)
    group_errors = np.bincount(group, weights=errors.astype(np.float64), minlength=values.size)
    start, errors_before = np.cumsum(counts) - counts, np.cumsum(group_errors) - group_errors
    g = np.sort(group)
    position = np.arange(scores.size)
    kept_errors = errors_before[g] + group_errors[g] * (position - start[g] + 1) / counts[g]
    return float((kept_errors / (position + 1)).mean())


def test_aurc_reference_is_the_plain_sorted_curve_without_ties() -> None:
    """Without ties the reference is the textbook mean of cumulative error rates."""
    rng = np.random.default_rng(5)
    scores, errors = rng.random(1_000), rng.random(1_000) < 0.3
    e = errors[np.argsort(scores)].astype(np.float64)
    assert _aurc_reference(scores, errors) == pytest.approx(float((np.cumsum(e) / np.arange(1, e.size + 1)).mean()), abs=1e-14)


def test_aurc_matches_sorted_risk_coverage() -> None:
    rng = np.random.default_rng(3)
    errors = rng.random(20_000) < 0.15
    scores = np.clip(rng.normal(0.3 + 0.3 * errors, 0.15), 0, 1)
    stats = DetectionStats()
    stats.update(torch.from_numpy(scores), torch.from_numpy(errors))
    assert stats.aurc() == pytest.approx(_aurc_reference(scores, errors), abs=1e-12)
    oracle = DetectionStats()
    oracle.update(torch.from_numpy(errors.astype(np.float64)), torch.from_numpy(errors))
    oracle_aurc, aurc = oracle.aurc(), stats.aurc()
    assert oracle_aurc is not None and aurc is not None
    assert oracle_aurc < aurc


def _piled_up(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 scores the way segmentation makes them: 40 % exactly 0, heavy ties, a pile just below 1, a long tail."""
    rng = np.random.default_rng(seed)
    flags = rng.random(n) < 0.08
    kind = rng.random(n)
    tail = (rng.random(n) ** 6 * np.where(flags, 1.0, 0.7)).astype(np.float32)
    scores = np.where(kind < 0.4, np.float32(0.0), tail)
    scores = np.where((kind >= 0.4) & (kind < 0.55), np.round(tail * 20) / 20, scores)  # 21 tied levels
    near_one = np.float32(1.0) - np.float32(1e-7) * rng.integers(0, 4, n).astype(np.float32)  # 1, 1 - 1e-7, ...
    scores = np.where((kind >= 0.55) & (kind < 0.6) & flags, near_one, scores)
    scores = np.where((kind >= 0.6) & (kind < 0.62), np.float32(1e-7) * rng.integers(1, 4, n), scores)  # tiny, tied
    return scores.astype(np.float32), flags


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_on_piled_up_scores_streamed_in_chunks(dtype: type) -> None:
    """40 % of scores tied at 0 and differences of 1e-7 near 0 and 1: AUROC and AURC equal the exact values."""
    scores, flags = _piled_up(200_000, seed=1)
    scores = scores.astype(dtype)
    assert (scores == 0).mean() > 0.38 and len(np.unique(scores[scores > 0.9999])) >= 3
    stats = DetectionStats()
    for part in range(0, scores.size, 16_384):
        stats.update(torch.from_numpy(scores[part : part + 16_384]), torch.from_numpy(flags[part : part + 16_384]))
    assert stats.exact and stats.auroc_error_bound() == 0.0 and stats.aurc_error_bound() == 0.0
    assert stats.distinct == len(np.unique(scores))
    assert stats.auroc() == pytest.approx(roc_auc_score(flags, scores), abs=1e-9)
    assert stats.aurc() == pytest.approx(_aurc_reference(scores, flags), abs=1e-9)


def test_equal_width_bins_would_fail_the_piled_up_scores() -> None:
    """The test data can tell exact counting from 65 536 equal-width bins over [0, 1] (the old histogram)."""
    scores, flags = _piled_up(200_000, seed=1)
    idx = np.minimum((scores.astype(np.float64) * 65_536).astype(np.int64), 65_535).astype(np.float64)
    assert abs(roc_auc_score(flags, idx) - roc_auc_score(flags, scores)) > 1e-4
    assert abs(_aurc_reference(idx, flags) - _aurc_reference(scores, flags)) > 1e-4


def test_past_the_cap_the_table_coarsens_within_its_error_bounds() -> None:
    """More distinct values than max_distinct: memory stays capped, the numbers stay within the stated bounds."""
    scores, flags = _piled_up(200_000, seed=2)
    exact_auroc, exact_aurc = roc_auc_score(flags, scores), _aurc_reference(scores, flags)
    for cap in (4_096, 64):
        stats = DetectionStats(max_distinct=cap)
        for part in range(0, scores.size, 10_000):
            stats.update(scores[part : part + 10_000], flags[part : part + 10_000])
        assert not stats.exact and stats.distinct <= cap
        auroc, aurc = stats.auroc(), stats.aurc()
        assert auroc is not None and aurc is not None
        assert stats.auroc_error_bound() > 0 and abs(auroc - exact_auroc) <= stats.auroc_error_bound() + 1e-12
        assert stats.aurc_error_bound() > 0 and abs(aurc - exact_aurc) <= stats.aurc_error_bound() + 1e-12
    fine = DetectionStats(max_distinct=4_096)
    fine.update(scores, flags)
    assert fine.auroc_error_bound() < 1e-3  # log-spaced bins stay fine where the scores pile up
