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
    stats = DetectionStats(0.0, 1.0)
    for part in range(0, flags.size, 7_000):
        stats.update(torch.from_numpy(scores[part : part + 7_000]), torch.from_numpy(flags[part : part + 7_000]))
    assert stats.auroc() == pytest.approx(roc_auc_score(flags, scores), abs=2e-4)


def test_auroc_ties_and_degenerate_cases() -> None:
    stats = DetectionStats(0.0, 1.0)
    stats.update(torch.tensor([0.5, 0.5, 0.9, 0.1]), torch.tensor([True, False, True, False]))
    assert stats.auroc() == pytest.approx(roc_auc_score([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.1]))
    only_pos = DetectionStats(0.0, 1.0)
    only_pos.update(torch.tensor([0.3]), torch.tensor([True]))
    assert only_pos.auroc() is None
    with pytest.raises(ValueError, match="empty score range"):
        DetectionStats(1.0, 1.0)


def _aurc_reference(scores: np.ndarray, errors: np.ndarray) -> float:
    order = np.argsort(scores, kind="stable")
    e = errors[order].astype(np.float64)
    k = np.arange(1, e.size + 1)
    return float((np.cumsum(e) / k).mean())


def test_aurc_matches_sorted_risk_coverage() -> None:
    rng = np.random.default_rng(3)
    errors = rng.random(20_000) < 0.15
    scores = np.clip(rng.normal(0.3 + 0.3 * errors, 0.15), 0, 1)
    stats = DetectionStats(0.0, 1.0)
    stats.update(torch.from_numpy(scores), torch.from_numpy(errors))
    assert stats.aurc() == pytest.approx(_aurc_reference(scores, errors), abs=5e-4)
    oracle = DetectionStats(0.0, 1.0)
    oracle.update(torch.from_numpy(errors.astype(np.float64)), torch.from_numpy(errors))
    assert oracle.aurc() < stats.aurc()
