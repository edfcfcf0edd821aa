"""Conformal risk control over images: threshold sets by brute force, the fit against a loop reference, the finite-sample
correction by an analytic case, and both guarantees (sets and class masks) by simulation with correlated pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.metrics.risk_control import GRID, class_set, fit_threshold, set_sizes, shortfall_curve, truth_probability

C = 5
THRESHOLDS = [0.0, 1e-6, 0.05, 0.2, 0.3, 0.4, 0.5, 0.9, 1.0]


def _probs_with_ties(rng: np.random.Generator, b: int = 2, h: int = 4, w: int = 5) -> np.ndarray:
    probs = rng.dirichlet(np.ones(C), size=(b, h, w)).transpose(0, 3, 1, 2)  # (B, C, H, W)
    probs[0, :, 0, 0] = [0.2, 0.2, 0.2, 0.2, 0.2]
    probs[0, :, 0, 1] = [0.1, 0.4, 0.1, 0.4, 0.0]
    probs[0, :, 0, 2] = [0.0, 0.0, 1.0, 0.0, 0.0]
    return probs


def test_set_sizes_and_class_sets_match_brute_force() -> None:
    probs = _probs_with_ties(np.random.default_rng(0))
    for t in THRESHOLDS:
        sizes = set_sizes(torch.from_numpy(probs), t)
        assert sizes.dtype == torch.uint8 and sizes.shape == (2, 4, 5)
        for i, y, x in np.ndindex(2, 4, 5):
            p = probs[i, :, y, x]
            members = [k for k in range(C) if p[k] >= t]
            assert sizes[i, y, x] == len(members)
            assert class_set(p, t) == sorted(members, key=lambda k: (-p[k], k))
    assert class_set(np.array([0.1, 0.4, 0.1, 0.4, 0.0]), 0.1) == [1, 3, 0, 2]
    with pytest.raises(ValueError, match="255"):
        set_sizes(torch.zeros(1, 256, 1, 1), 0.5)


def test_truth_probability_and_its_curve() -> None:
    """The set holds the true class iff ``p_y >= t``: the curve is the share of pixels outside their set, exact on the grid."""
    rng = np.random.default_rng(1)
    probs = _probs_with_ties(rng)[0]
    labels = rng.integers(0, C, size=(4, 5))
    labels[0, 0] = 255  # ignored
    valid = np.ones((4, 5), dtype=bool)
    valid[3, 4] = False
    p_true = truth_probability(probs, labels, valid)
    assert p_true.shape == (18,)
    curve = shortfall_curve(p_true)
    for j in (0, 1, GRID // 4, GRID // 2, GRID):
        t = j / GRID
        outside = [labels[y, x] not in class_set(probs[:, y, x], t) for y, x in np.ndindex(4, 5) if labels[y, x] < C and valid[y, x]]
        assert curve[j] == pytest.approx(np.mean(outside), abs=0)
    assert shortfall_curve(np.array([0.5, 0.25]))[GRID // 2] == 0.5  # a value on the grid point is inside (p >= t)
    with pytest.raises(ValueError, match="no pixels"):
        shortfall_curve(np.array([]))


def _reference(curves: np.ndarray, alpha: float) -> float:
    n, best = len(curves), 0.0
    for j in range(GRID + 1):
        if (n * curves[:, j].mean() + 1) / (n + 1) <= alpha + 1e-12:
            best = j / GRID
    return best


@pytest.mark.parametrize("seed", range(6))
def test_fit_matches_a_loop_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    curves = np.stack([shortfall_curve(rng.beta(2.0, 0.5, size=int(rng.integers(1, 30)))) for _ in range(n)])
    for alpha in (0.01, 0.05, 0.1, 0.3, 0.9, 0.999):
        assert fit_threshold(curves, alpha) == _reference(curves, alpha)


def test_finite_sample_correction_analytic() -> None:
    """Three images with loss ``L(t) = t``: ``(3t + 1)/4 <= 0.4`` iff ``t <= 0.2`` (without the ``+1``: 0.4)."""
    levels = np.arange(GRID + 1) / GRID
    assert fit_threshold(np.tile(levels, (3, 1)), 0.4) == np.floor(0.2 * GRID) / GRID
    zero = np.zeros((4, GRID + 1))
    assert fit_threshold(zero, 0.19) == 0.0 and fit_threshold(zero, 0.21) == 1.0  # alpha < 1/(n + 1): nothing qualifies


def test_fit_rejects_bad_input() -> None:
    ok = np.zeros((2, GRID + 1))
    for alpha in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            fit_threshold(ok, alpha)
    with pytest.raises(ValueError, match="at least one"):
        fit_threshold(np.zeros((0, GRID + 1)), 0.1)
    with pytest.raises(ValueError, match="GRID"):
        fit_threshold(np.zeros((2, GRID)), 0.1)
    with pytest.raises(ValueError, match="non-decreasing"):
        fit_threshold(np.tile(np.arange(GRID + 1) / GRID, (2, 1))[:, ::-1], 0.1)


def _simulate(rng: np.random.Generator, n: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Model probabilities and labels drawn from a perturbed version, both with an image-level shared offset."""
    logits = 1.5 * rng.normal(size=(n, C, 1, 1)) + 1.2 * rng.normal(size=(n, C, size, size))
    noise = 0.6 * rng.normal(size=(n, C, 1, 1)) + 0.5 * rng.normal(size=(n, C, size, size))
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    truth = torch.softmax(torch.from_numpy(logits + noise), dim=1).numpy()
    u = rng.random(size=(n, 1, size, size))
    labels = np.minimum((np.cumsum(truth, axis=1) < u).sum(axis=1), C - 1)
    return probs, labels


ALPHA = 0.1
N_CAL = N_TEST = 200
SPLITS = 20


def test_guarantees_hold_by_simulation() -> None:
    """Over 20 random calibration/test splits, the mean test miscoverage (sets) and false-negative rate (class 0's mask) at
    alpha = 0.1 lie within [alpha - 0.02, alpha + 1/(n + 1) + 0.02]; each split within 5 standard errors plus the correction."""
    rng = np.random.default_rng(2026)
    set_risk, mask_risk = [], []
    for _ in range(SPLITS):
        probs, labels = _simulate(rng, N_CAL + N_TEST)
        loss = np.stack([shortfall_curve(truth_probability(p, y)) for p, y in zip(probs, labels, strict=True)])
        has_c = (labels == 0).any(axis=(1, 2))
        fnr = np.stack([shortfall_curve(p[0][y == 0]) if h else np.zeros(GRID + 1) for p, y, h in zip(probs, labels, has_c, strict=True)])
        t = fit_threshold(loss[:N_CAL], ALPHA)
        sizes = set_sizes(torch.from_numpy(probs[N_CAL:]), t).numpy()
        inside = np.take_along_axis(probs[N_CAL:], labels[N_CAL:, None], axis=1)[:, 0] >= t
        np.testing.assert_allclose((~inside).mean(axis=(1, 2)), loss[N_CAL:, round(t * GRID)])
        assert sizes.max() <= (1 if t > 0.5 else C)
        cal_c, test_c = has_c[:N_CAL], has_c[N_CAL:]
        t_mask = fit_threshold(fnr[:N_CAL][cal_c], ALPHA)
        risk_set, risk_mask = loss[N_CAL:, round(t * GRID)], fnr[N_CAL:][test_c][:, round(t_mask * GRID)]
        set_risk.append(risk_set.mean())
        mask_risk.append(risk_mask.mean())
        for risk, n_cal in ((risk_set, N_CAL), (risk_mask, int(cal_c.sum()))):
            band = 1 / (n_cal + 1) + 5 * risk.std() * np.sqrt(1 / n_cal + 1 / len(risk))
            assert abs(risk.mean() - ALPHA) <= band
    upper = ALPHA + 1 / (N_CAL + 1) + 0.02
    assert ALPHA - 0.02 <= np.mean(set_risk) <= upper
    assert ALPHA - 0.02 <= np.mean(mask_risk) <= upper
