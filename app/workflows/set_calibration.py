"""Fit the card's conformal prediction sets and class masks (:mod:`app.metrics.risk_control`) on labelled analyses.

``calibrate`` hands every labelled image's mean probabilities and mask to :class:`SetCalibration`; each image becomes one
loss curve (its share of miscovered pixels at every threshold of the grid) and, per class it shows, one false-negative
curve. :meth:`SetCalibration.fit` then picks each level's threshold by conformal risk control over the images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.engine.analysis import Analysis
from app.io.card import ClassMaskLevel, ConformalLevel, ConformalSets
from app.metrics.risk_control import GRID, fit_threshold, shortfall_curve, truth_probability

__all__ = ["ALPHAS", "SETS_METHOD", "SetCalibration", "SetCoverage"]

ALPHAS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2)
SETS_METHOD = (
    "conformal risk control (Angelopoulos et al. 2022) over images, loss bound 1: each pixel's set is every class with p_c >= t "
    "(threshold sets, Sadinle et al. 2019; possibly empty); t is the largest of a 2048-step grid with (n R(t) + 1) / (n + 1) <= alpha, "
    "R the calibration images' mean share of pixels whose true class is outside their set. Class masks: p_class >= t, t the largest "
    "grid value with (n FNR(t) + 1) / (n + 1) <= alpha over the images that show the class"
)


class SetCalibration:
    """Loss curves of labelled images, one image at a time.

    Args:
        class_names: The model's classes.
        ignore_index: Mask value that is not scored (``None``: every in-range label is).
    """

    def __init__(self, class_names: Sequence[str], ignore_index: int | None) -> None:
        self.class_names = list(class_names)
        self.ignore_index = ignore_index
        self.losses: list[np.ndarray] = []
        self.fnrs: list[list[np.ndarray]] = [[] for _ in self.class_names]

    def add(self, mean_probs: np.ndarray, mask: np.ndarray) -> None:
        """Add one image: ``(C, H, W)`` mean probabilities and its ``(H, W)`` mask; an image without scored pixels adds nothing."""
        classes = len(self.class_names)
        valid = (mask >= 0) & (mask < classes)
        if self.ignore_index is not None:
            valid &= mask != self.ignore_index
        if not valid.any():
            return
        self.losses.append(shortfall_curve(truth_probability(mean_probs, mask, valid)))
        for c in range(classes):
            truth = valid & (mask == c)
            if truth.any():
                self.fnrs[c].append(shortfall_curve(mean_probs[c][truth]))

    def fit(self, *, analysis_method: str, samples: int, calibrated_on: str, alphas: Sequence[float] = ALPHAS, command: str | None = None) -> ConformalSets:
        """Each level's threshold, and each class's mask threshold at every level.

        Raises:
            ValueError: no image had scored pixels.
        """
        if not self.losses:
            raise ValueError("conformal sets need at least one calibration image with scored pixels")
        losses = np.stack(self.losses)
        levels = []
        for alpha in alphas:
            threshold = fit_threshold(losses, alpha)
            levels.append(ConformalLevel(alpha=alpha, threshold=threshold, calibration_risk=_at(losses, threshold)))
        masks = []
        for name, curves in zip(self.class_names, self.fnrs, strict=True):
            if not curves:
                continue
            fnr = np.stack(curves)
            for alpha in alphas:
                threshold = fit_threshold(fnr, alpha)
                masks.append(ClassMaskLevel(class_name=name, alpha=alpha, threshold=threshold, images=len(curves), calibration_fnr=_at(fnr, threshold)))
        return ConformalSets(
            method=SETS_METHOD,
            score=f"the mean class probabilities of the analysis ({analysis_method}, {samples} MC samples, uncalibrated: tau = 1)",
            analysis_method=analysis_method,
            samples=samples,
            calibrated_on=calibrated_on,
            images=len(self.losses),
            levels=levels,
            class_masks=masks,
            command=command,
        )


def _at(curves: np.ndarray, threshold: float) -> float:
    """The mean over images of their curves at ``threshold`` (a grid point)."""
    return float(curves[:, round(threshold * GRID)].mean())


class SetCoverage:
    """How the analyses' conformal sets cover labelled images (``evaluate``): per level, each image's share of scored pixels
    whose true class is outside its set, and its mean set size; what the card's guarantee bounds, on the user's images.

    Args:
        num_classes: ``C``.
        ignore_index: Mask value that is not scored (``None``: every in-range label is).
    """

    def __init__(self, num_classes: int, ignore_index: int | None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.thresholds: dict[float, float] = {}
        self.misses: dict[float, list[float]] = {}
        self.sizes: dict[float, list[float]] = {}

    def add(self, analysis: Analysis, mask: np.ndarray) -> None:
        """One labelled analysis; one without sets or without scored pixels adds nothing."""
        if analysis.sets is None or analysis.class_arrays is None:
            return
        valid = (mask >= 0) & (mask < self.num_classes)
        if self.ignore_index is not None:
            valid &= mask != self.ignore_index
        if not valid.any():
            return
        p_true = truth_probability(analysis.mean_probs, mask, valid)
        for alpha, threshold in analysis.sets.thresholds.items():
            self.thresholds[alpha] = threshold
            self.misses.setdefault(alpha, []).append(float((p_true < threshold).mean()))
            self.sizes.setdefault(alpha, []).append(float(analysis.sets.sizes[alpha][valid].mean(dtype=np.float64)))

    def result(self) -> dict[str, dict[str, float]] | None:
        """Per level (alpha as text): threshold, images, the mean miss share with its standard error over images, and the
        mean set size; ``None`` when no analysis had sets."""
        if not self.misses:
            return None
        out = {}
        for alpha, misses in sorted(self.misses.items()):
            values = np.asarray(misses)
            se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
            out[f"{alpha:g}"] = {
                "alpha": alpha,
                "threshold": self.thresholds[alpha],
                "images": len(values),
                "miss_share": float(values.mean()),
                "standard_error": se,
                "mean_set_size": float(np.mean(self.sizes[alpha])),
            }
        return out
