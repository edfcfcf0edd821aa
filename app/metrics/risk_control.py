"""Conformal risk control (Angelopoulos, Bates, Fisch, Lei, Schuster 2022) for per-pixel prediction sets and class masks.

The exchangeable unit is the *image*, never the pixel: pixels of one image are correlated, so each image contributes
one loss, the fraction of its pixels that fail, as a function of the threshold. Both fits take an ``(n, GRID + 1)``
matrix of such curves on the grid ``λ_j = j / GRID`` and apply the finite-sample correction of CRC with loss bound
``B = 1``: a threshold qualifies when ``(n · R̂ + 1) / (n + 1) ≤ α``, ``R̂`` being the mean loss over the ``n``
calibration images.

Guarantees, when the new image is exchangeable with the calibration images (drawn from the same distribution):

* Prediction sets (:func:`fit_set_threshold`): ``E[L(λ̂)] ≤ α``, where ``L`` is the fraction of the new image's valid
  pixels whose true class is outside their set, the expectation being over calibration and new image together.
* Class masks (:func:`fit_mask_threshold`): ``E[FNR(t̂)] ≤ α``, where ``FNR`` is the fraction of the new image's true
  pixels of the class that fall outside the mask ``{p_c ≥ t̂}``, conditional on the new image containing the class
  (calibrate on the images that contain it).

Neither bound is per image or per pixel: a single image may be far worse. When the losses have no ties and jump little,
Theorem 2 of the paper also bounds the risk from below, ``E[L(λ̂)] ≥ α − 2B/(n + 1)``, so the control is not
needlessly conservative (here only roughly: losses are pixel fractions on a finite grid). Everything assumes
exchangeability; under distribution shift (another scanner, site or population) the guarantee is void.

Sets are APS-like and non-randomised: classes sorted by probability (descending, ties to the smaller index) with
cumulative masses ``m_1 ≤ … ≤ m_C``; the set at ``λ`` is the top ``k(λ) = min{k : m_k ≥ λ}`` classes (at least one;
all ``C`` when ``λ ≥ 1``). The true class is covered iff ``b < λ``, ``b`` the mass ranked above it. The loss counts a
pixel as miscovered iff ``b ≥ λ`` (``λ < 1``), which at ``λ = 0`` also counts the top class (whose set holds it); as
``L(0) = 1`` for every image, ``λ̂`` is never 0 and the fitted threshold is unaffected. Masses are summed in float64.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "GRID",
    "class_set",
    "fit_mask_threshold",
    "fit_set_threshold",
    "image_fnr",
    "image_miscoverage",
    "mass_above_truth",
    "set_sizes",
]

GRID = 2048
"""Number of grid steps: thresholds are ``j / GRID`` for ``j = 0 … GRID`` (exact in float64)."""

_LEVELS = np.arange(GRID + 1, dtype=np.float64) / GRID


def set_sizes(probs: torch.Tensor, lam: float) -> torch.Tensor:
    """Sizes of the prediction sets at threshold ``lam``.

    Args:
        probs: Class probabilities, shape ``(B, C, H, W)``, ``C ≤ 255``.
        lam: Threshold ``λ``; ``λ ≥ 1`` gives every class.

    Returns:
        ``(B, H, W)`` uint8 tensor: ``1 + #{j < C : m_j < λ}`` (``C`` when ``λ ≥ 1``).

    Raises:
        ValueError: If ``probs`` is not 4-D or has more than 255 classes.
    """
    if probs.ndim != 4:
        raise ValueError(f"probs must have shape (B, C, H, W), got {tuple(probs.shape)}")
    c = probs.shape[1]
    if not 1 <= c <= 255:
        raise ValueError(f"set sizes are uint8: need 1 ≤ C ≤ 255 classes, got {c}")
    if lam >= 1.0:
        return torch.full((probs.shape[0], *probs.shape[2:]), c, dtype=torch.uint8, device=probs.device)
    neg_sorted, _ = torch.sort(-probs.to(torch.float64), dim=1, stable=True)
    mass = torch.cumsum(-neg_sorted, dim=1)
    return (1 + (mass[:, : c - 1] < lam).sum(dim=1)).to(torch.uint8)


def class_set(p: np.ndarray, lam: float) -> list[int]:
    """The classes in one pixel's prediction set, in rank order (most probable first).

    Args:
        p: Class probabilities of one pixel, shape ``(C,)``.
        lam: Threshold ``λ``; ``λ ≥ 1`` gives every class.

    Returns:
        The top ``k(λ)`` class indices (same size as :func:`set_sizes`).
    """
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(-p, kind="stable")
    c = p.shape[0]
    size = c if lam >= 1.0 else 1 + int(np.count_nonzero(np.cumsum(p[order])[: c - 1] < lam))
    return [int(k) for k in order[:size]]


def mass_above_truth(probs: np.ndarray, labels: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Probability mass ranked above the true class, ``b = m_{r−1}``, for each valid pixel of one image.

    The true class is in the set at ``λ`` iff ``b < λ`` (for ``0 < λ < 1``; always for ``λ ≥ 1``).

    Args:
        probs: Class probabilities, shape ``(C, H, W)``.
        labels: True classes, shape ``(H, W)``; pixels outside ``[0, C)`` (ignore labels) are skipped.
        valid: Optional ``(H, W)`` boolean mask of the pixels to use.

    Returns:
        1-D float64 array of ``b``, one per valid pixel in row-major order (possibly empty).

    Raises:
        ValueError: If the shapes disagree.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 3 or labels.shape != probs.shape[1:]:
        raise ValueError(f"need probs (C, H, W) and labels (H, W), got {probs.shape} and {labels.shape}")
    c = probs.shape[0]
    keep = (labels >= 0) & (labels < c)
    if valid is not None:
        if valid.shape != labels.shape:
            raise ValueError(f"valid must have the labels' shape {labels.shape}, got {valid.shape}")
        keep &= valid.astype(bool)
    p = probs[:, keep]  # (C, N)
    y = labels[keep].astype(np.int64)
    order = np.argsort(-p, axis=0, kind="stable")
    mass = np.cumsum(np.take_along_axis(p, order, axis=0), axis=0)
    above = np.concatenate([np.zeros((1, p.shape[1])), mass[:-1]], axis=0)  # above[r] = m_r (0-based rank r)
    rank = np.argmax(order == y[None, :], axis=0)
    return np.asarray(above[rank, np.arange(p.shape[1])], dtype=np.float64)


def _count_below(values: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """``#{v < λ_j}`` for every grid level (exact: one sorted search) and ``N``."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if v.size == 0:
        raise ValueError(f"{name}: no pixels; skip this image (it carries no loss)")
    return np.searchsorted(v, _LEVELS, side="left"), v.size


def image_miscoverage(b: np.ndarray) -> np.ndarray:
    """One image's miscoverage curve ``L(λ_j)``: the fraction of its pixels with ``b ≥ λ_j`` (0 at ``λ = 1``).

    Args:
        b: The image's masses above the truth (:func:`mass_above_truth`).

    Returns:
        Shape ``(GRID + 1,)``, non-increasing, ``L(0) = 1`` and ``L(1) = 0``.

    Raises:
        ValueError: If ``b`` is empty; the caller skips images with no valid pixel.
    """
    below, n = _count_below(b, "image_miscoverage")
    loss = (n - below) / n
    loss[GRID] = 0.0
    return np.asarray(loss, dtype=np.float64)


def image_fnr(pc_on_truth: np.ndarray) -> np.ndarray:
    """One image's false-negative-rate curve ``FNR(t_j)``: the fraction of its true-``c`` pixels with ``p_c < t_j``.

    Args:
        pc_on_truth: The probability of class ``c`` at the image's pixels whose true class is ``c``.

    Returns:
        Shape ``(GRID + 1,)``, non-decreasing, ``FNR(0) = 0``.

    Raises:
        ValueError: If there is no true-``c`` pixel; such an image does not enter the FNR calibration.
    """
    below, n = _count_below(pc_on_truth, "image_fnr")
    return np.asarray(below / n, dtype=np.float64)


def _qualifying(curves: np.ndarray, alpha: float, increasing: bool) -> np.ndarray:
    """Validate a loss matrix and return the grid mask ``(Σ_i L_i(λ_j) + 1) / (n + 1) ≤ α``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 2 or curves.shape[1] != GRID + 1:
        raise ValueError(f"need one loss curve of length GRID + 1 = {GRID + 1} per image, got shape {curves.shape}")
    n = curves.shape[0]
    if n == 0:
        raise ValueError("no calibration images: risk control needs at least one")
    if not np.all(np.isfinite(curves)) or curves.min() < 0.0 or curves.max() > 1.0:
        raise ValueError("losses must be finite fractions in [0, 1]")
    steps = np.diff(curves, axis=1)
    if np.any(steps < 0.0 if increasing else steps > 0.0):
        raise ValueError(f"each loss curve must be {'non-decreasing' if increasing else 'non-increasing'} in the threshold")
    return np.asarray((curves.sum(axis=0) + 1.0) / (n + 1) <= alpha)


def fit_set_threshold(losses: np.ndarray, alpha: float) -> float:
    """CRC threshold for prediction sets: the smallest ``λ_j`` with ``(n · R̂(λ_j) + 1) / (n + 1) ≤ α``.

    Args:
        losses: ``(n, GRID + 1)`` rows of :func:`image_miscoverage`, one per calibration image.
        alpha: Target expected miscoverage fraction, in ``(0, 1)``.

    Returns:
        ``λ̂``; 1.0 (every class, trivially covered) when ``α < 1/(n + 1)``, where no threshold qualifies.

    Raises:
        ValueError: If ``alpha`` is outside ``(0, 1)``, ``n = 0``, or the curves are malformed or increasing.
    """
    ok = _qualifying(losses, alpha, increasing=False)
    return float(_LEVELS[int(np.argmax(ok))]) if ok.any() else 1.0


def fit_mask_threshold(fnrs: np.ndarray, alpha: float) -> float:
    """CRC threshold for a class mask ``{p_c ≥ t}``: the largest ``t_j`` with ``(n · mean FNR(t_j) + 1) / (n + 1) ≤ α``.

    Args:
        fnrs: ``(n, GRID + 1)`` rows of :func:`image_fnr`, one per calibration image containing the class.
        alpha: Target expected false-negative rate, in ``(0, 1)``.

    Returns:
        ``t̂``; 0.0 (the mask is every pixel, FNR 0) when ``α < 1/(n + 1)``, where no threshold qualifies.

    Raises:
        ValueError: If ``alpha`` is outside ``(0, 1)``, ``n = 0``, or the curves are malformed or decreasing.
    """
    ok = _qualifying(fnrs, alpha, increasing=True)
    return float(_LEVELS[int(np.flatnonzero(ok)[-1])]) if ok.any() else 0.0
