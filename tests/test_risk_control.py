"""Conformal risk control over images: set sizes and masses by brute force, the fits against a loop reference, the
finite-sample correction by an analytic case, and both guarantees by simulation with correlated pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.metrics.risk_control import (
    GRID,
    class_set,
    fit_mask_threshold,
    fit_set_threshold,
    image_fnr,
    image_miscoverage,
    mass_above_truth,
    set_sizes,
)

C = 5
LAMBDAS = [0.0, 1e-12, 1e-6, 0.05, 0.3, 0.5, 0.7, 0.9, 0.999, 1.0, 1.5]


def _probs_with_ties(rng: np.random.Generator, b: int = 2, h: int = 4, w: int = 5) -> np.ndarray:
    probs = rng.dirichlet(np.ones(C), size=(b, h, w)).transpose(0, 3, 1, 2)  # (B, C, H, W)
    probs[0, :, 0, 0] = [0.2, 0.2, 0.2, 0.2, 0.2]
    probs[0, :, 0, 1] = [0.1, 0.4, 0.1, 0.4, 0.0]
    probs[0, :, 0, 2] = [0.0, 0.0, 1.0, 0.0, 0.0]
    probs[1, :, 1, 1] = [0.3, 0.3, 0.0, 0.4, 0.0]
    return probs


def _brute_size(p: np.ndarray, lam: float) -> int:
    if lam >= 1.0:
        return len(p)
    order = sorted(range(len(p)), key=lambda k: (-p[k], k))
    total = 0.0
    for k, cls in enumerate(order, start=1):
        total += float(p[cls])
        if total >= lam:
            return k
    return len(p)


def test_set_sizes_match_brute_force() -> None:
    probs = _probs_with_ties(np.random.default_rng(0))
    for lam in LAMBDAS:
        sizes = set_sizes(torch.from_numpy(probs).float(), lam)
        assert sizes.dtype == torch.uint8 and sizes.shape == (2, 4, 5)
        expected = [[[_brute_size(probs[i, :, y, x].astype(np.float32).astype(np.float64), lam) for x in range(5)] for y in range(4)] for i in range(2)]
        np.testing.assert_array_equal(sizes.numpy(), np.array(expected))


def test_class_set_and_coverage_by_brute_force() -> None:
    rng = np.random.default_rng(1)
    probs = _probs_with_ties(rng)
    labels = rng.integers(0, C, size=(2, 4, 5))
    for i in range(2):
        b = mass_above_truth(probs[i], labels[i])
        assert b.shape == (20,) and b.dtype == np.float64
        for lam in LAMBDAS:
            sizes = set_sizes(torch.from_numpy(probs), lam).numpy()
            for k, (y, x) in enumerate(np.ndindex(4, 5)):
                p = probs[i, :, y, x]
                members = class_set(p, lam)
                assert len(members) == sizes[i, y, x] == _brute_size(p, lam)
                assert members == sorted(range(C), key=lambda c: (-p[c], c))[: len(members)]
                covered = int(labels[i, y, x]) in members
                if 0.0 < lam < 1.0:
                    assert covered == (b[k] < lam)
                elif lam >= 1.0:
                    assert covered


def test_mass_above_truth_skips_invalid_pixels() -> None:
    probs = np.array([[[0.5, 0.1, 0.2]], [[0.3, 0.6, 0.2]], [[0.2, 0.3, 0.6]]])  # (3, 1, 3)
    labels = np.array([[2, 0, 255]])
    np.testing.assert_allclose(mass_above_truth(probs, labels), [0.8, 0.9])
    np.testing.assert_allclose(mass_above_truth(probs, labels, valid=np.array([[False, True, True]])), [0.9])
    assert mass_above_truth(probs, np.full((1, 3), -1)).size == 0


def test_loss_curves_exact_on_grid() -> None:
    b = np.array([0.0, 0.5, 1 / GRID, 0.25, 0.99])
    loss = image_miscoverage(b)
    assert loss.shape == (GRID + 1,)
    assert loss[0] == 1.0 and loss[1] == 4 / 5 and loss[2] == 3 / 5 and loss[GRID // 2] == 2 / 5 and loss[GRID // 2 + 1] == 1 / 5
    assert loss[GRID] == 0.0 and np.all(np.diff(loss) <= 0)
    fnr = image_fnr(np.array([0.0, 0.5, 1.0, 0.75]))
    assert fnr[0] == 0.0 and fnr[1] == 1 / 4 and fnr[GRID // 2] == 1 / 4 and fnr[GRID // 2 + 1] == 2 / 4 and fnr[GRID] == 3 / 4
    for fn in (image_miscoverage, image_fnr):
        with pytest.raises(ValueError, match="skip"):
            fn(np.array([]))


def _reference_set(losses: np.ndarray, alpha: float) -> float:
    n = len(losses)
    for j in range(GRID + 1):
        if (n * losses[:, j].mean() + 1) / (n + 1) <= alpha + 1e-12:
            return j / GRID
    return 1.0


def _reference_mask(fnrs: np.ndarray, alpha: float) -> float:
    n, best = len(fnrs), 0.0
    for j in range(GRID + 1):
        if (n * fnrs[:, j].mean() + 1) / (n + 1) <= alpha + 1e-12:
            best = j / GRID
    return best


@pytest.mark.parametrize("seed", range(6))
def test_fits_match_loop_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    b = [rng.beta(0.5, 2.0, size=int(rng.integers(1, 30))) for _ in range(n)]
    losses = np.stack([image_miscoverage(x) for x in b])
    fnrs = np.stack([image_fnr(x) for x in b])
    for alpha in (0.01, 0.05, 0.1, 0.3, 0.9, 0.999):
        assert fit_set_threshold(losses, alpha) == _reference_set(losses, alpha)
        assert fit_mask_threshold(fnrs, alpha) == _reference_mask(fnrs, alpha)


def test_finite_sample_correction_analytic() -> None:
    # Three images, each L(λ) = 1 − λ: (3(1 − λ) + 1)/4 ≤ 0.4 ⇔ λ ≥ 0.8. Without "+1" λ̂ would be 0.6 (or 7/15 with n/(n+1)).
    levels = np.arange(GRID + 1) / GRID
    losses = np.tile(1.0 - levels, (3, 1))
    assert fit_set_threshold(losses, 0.4) == np.ceil(0.8 * GRID) / GRID
    # Masks, FNR(t) = t: (3t + 1)/4 ≤ 0.4 ⇔ t ≤ 0.2.
    assert fit_mask_threshold(np.tile(levels, (3, 1)), 0.4) == np.floor(0.2 * GRID) / GRID
    # α < 1/(n + 1): nothing qualifies, not even a zero-loss threshold.
    zero = np.zeros((4, GRID + 1))
    assert fit_set_threshold(zero, 0.19) == 1.0 and fit_set_threshold(zero, 0.21) == 0.0
    assert fit_mask_threshold(zero, 0.19) == 0.0 and fit_mask_threshold(zero, 0.21) == 1.0


def test_fit_rejects_bad_input() -> None:
    ok = np.zeros((2, GRID + 1))
    for alpha in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            fit_set_threshold(ok, alpha)
        with pytest.raises(ValueError, match="alpha"):
            fit_mask_threshold(ok, alpha)
    with pytest.raises(ValueError, match="at least one"):
        fit_set_threshold(np.zeros((0, GRID + 1)), 0.1)
    with pytest.raises(ValueError, match="GRID"):
        fit_mask_threshold(np.zeros((2, GRID)), 0.1)
    rising = np.tile(np.arange(GRID + 1) / GRID, (2, 1))
    with pytest.raises(ValueError, match="non-increasing"):
        fit_set_threshold(rising, 0.1)
    with pytest.raises(ValueError, match="non-decreasing"):
        fit_mask_threshold(rising[:, ::-1], 0.1)


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
    rng = np.random.default_rng(2026)
    set_risk, mask_risk = [], []
    for _ in range(SPLITS):
        probs, labels = _simulate(rng, N_CAL + N_TEST)
        loss = np.stack([image_miscoverage(mass_above_truth(p, y)) for p, y in zip(probs, labels, strict=True)])
        has_c = (labels == 0).any(axis=(1, 2))
        fnr = np.stack([image_fnr(p[0][y == 0]) if h else np.zeros(GRID + 1) for p, y, h in zip(probs, labels, has_c, strict=True)])
        lam = fit_set_threshold(loss[:N_CAL], ALPHA)
        j = round(lam * GRID)
        # Direct check that the loss curve is the set's miscoverage: the true class outside {size ≤ set_sizes}.
        sizes = set_sizes(torch.from_numpy(probs[N_CAL:]), lam).numpy()
        rank_of = np.argsort(np.argsort(-probs[N_CAL:], axis=1, kind="stable"), axis=1)  # 0-based rank of each class
        rank_of_truth = np.take_along_axis(rank_of, labels[N_CAL:, None], axis=1)[:, 0]
        np.testing.assert_allclose((rank_of_truth >= sizes).mean(axis=(1, 2)), loss[N_CAL:, j])
        cal_c, test_c = has_c[:N_CAL], has_c[N_CAL:]
        t = fit_mask_threshold(fnr[:N_CAL][cal_c], ALPHA)
        risk_set, risk_mask = loss[N_CAL:, j], fnr[N_CAL:][test_c][:, round(t * GRID)]
        set_risk.append(risk_set.mean())
        mask_risk.append(risk_mask.mean())
        # Per split: the test mean moves with the test images and with λ̂ (calibration mean), each of standard error
        # ≈ sd(L)/√n; 5 combined standard errors plus the 1/(n+1) correction bound a single split's deviation.
        for risk, n_cal in ((risk_set, N_CAL), (risk_mask, int(cal_c.sum()))):
            band = 1 / (n_cal + 1) + 5 * risk.std() * np.sqrt(1 / n_cal + 1 / len(risk))
            assert abs(risk.mean() - ALPHA) <= band
    upper = ALPHA + 1 / (N_CAL + 1) + 0.02
    assert ALPHA - 0.02 <= np.mean(set_risk) <= upper
    assert ALPHA - 0.02 <= np.mean(mask_risk) <= upper
