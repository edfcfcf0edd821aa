"""The evaluation core: fold analysed images and their masks into every metric.

Everything streams: per image, the analysis is folded into a confusion matrix, calibration bins and exact tables
of score counts (:class:`~app.metrics.detection.DetectionStats`, bounded in memory), so any number of images fits.
Scored pixels follow :func:`~app.metrics.pixels.scored_pixels`; errors are scored pixels where the prediction ``argmax p̄`` differs from the label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from app.defaults import ECE_BINS, IGNORE_INDEX
from app.engine.analysis import Analysis
from app.maps.registry import DETECTION_MAPS, get_map
from app.metrics.calibration import CalibrationResult, CalibrationStats
from app.metrics.detection import DetectionStats
from app.metrics.pixels import scored_pixels
from app.metrics.segmentation import confusion_matrix, segmentation_scores
from app.metrics.temperature import rescale

__all__ = ["DetectionResult", "EvaluationResult", "Evaluator", "OodResult", "SegmentationResult", "check_ood_label", "unit_temperature_probs"]

NOTES = (
    "errors: argmax of the MC-mean probabilities != label; confidence is scored as 1 - confidence; "
    "AUROC and AURC: exact on the score values (ties count 1/2, tied errors spread evenly); "
    f"ECE: top-label, {ECE_BINS} equal-width bins"
)


@dataclass(frozen=True)
class SegmentationResult:
    """mIoU, pixel accuracy and per-class IoU (``None``: class absent from mask and prediction)."""

    miou: float
    pixel_accuracy: float
    pixels: int
    iou_per_class: dict[str, float | None]


@dataclass(frozen=True)
class DetectionResult:
    """How well one map flags wrong pixels: AUROC (``None`` without both kinds) and AURC (lower is better)."""

    auroc: float | None
    aurc: float | None


@dataclass(frozen=True)
class OodResult:
    """How well one map flags OOD-labelled pixels among in-distribution ones (``None`` without both kinds)."""

    auroc: float | None


@dataclass(frozen=True)
class EvaluationResult:
    """All metrics of an evaluation.

    Attributes:
        calibration: ``softmax`` (deterministic, τ = 1), ``softmax_scaled`` (at the fitted τ, when there is one) and
            ``mc_mean`` (the MC-mean probabilities as analysed).
        error_detection: Per detection map, AUROC and AURC of flagging wrong pixels.
        ood_detection: Per detection map, AUROC of flagging ``ood_label`` pixels; ``None`` without an ``ood_label``.
    """

    images: int
    segmentation: SegmentationResult
    calibration: dict[str, CalibrationResult]
    error_detection: dict[str, DetectionResult]
    ood_detection: dict[str, OodResult] | None
    ood_label: int | None
    ignore_index: int | None
    notes: str = NOTES


def check_ood_label(num_classes: int, ood_label: int | None) -> None:
    """Refuse an ``ood_label`` that is one of the model's own classes (its pixels would count as both kinds).

    Raises:
        ValueError: naming ``ood_label`` and the fix.
    """
    if ood_label is not None and ood_label < num_classes:
        raise ValueError(f"ood_label: {ood_label} is a class of the model (0 to {num_classes - 1}); use a mask value no class uses, e.g. 255")


def unit_temperature_probs(analysis: Analysis) -> np.ndarray:
    """The analysis's deterministic softmax at τ = 1, ``(C, H, W)``.

    A calibrated analysis holds ``softmax(z / τ)``; ``softmax(τ · log p)`` gives back ``softmax(z)`` (softmax ignores
    the per-pixel shift), so ``softmax`` and ``softmax_scaled`` mean the same with or without ``calibrated``.
    """
    if not analysis.calibrated or analysis.temperature == 1.0:
        return analysis.probs
    return rescale(torch.from_numpy(analysis.probs), analysis.temperature, dim=0).numpy()


@dataclass
class Evaluator:
    """Fold analyses and their masks into all metrics.

    Args:
        num_classes: ``C``.
        ignore_index: Mask value that is not scored.
        ood_label: Mask value that marks out-of-distribution pixels (may equal ``ignore_index``).
        temperature: When set, also score the temperature-scaled softmax (``softmax_scaled``).

    Raises:
        ValueError: ``ood_label`` is one of the ``num_classes`` classes (see :func:`check_ood_label`).
    """

    num_classes: int
    ignore_index: int | None = IGNORE_INDEX
    ood_label: int | None = None
    temperature: float | None = None
    images: int = 0
    confusion: torch.Tensor = field(init=False)
    calibration: dict[str, CalibrationStats] = field(init=False)
    errors: dict[str, DetectionStats] = field(default_factory=dict, init=False)
    ood: dict[str, DetectionStats] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        check_ood_label(self.num_classes, self.ood_label)
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        self.calibration = {"softmax": CalibrationStats(), "mc_mean": CalibrationStats()}
        if self.temperature is not None:
            self.calibration["softmax_scaled"] = CalibrationStats()

    def _pixels(self, probs: np.ndarray, valid: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(probs.reshape(self.num_classes, -1)).T[valid]

    def add(self, analysis: Analysis, mask: np.ndarray) -> None:
        """Fold one analysed image and its ``(H, W)`` mask in."""
        y = torch.from_numpy(mask.reshape(-1))
        valid = scored_pixels(y, self.num_classes, self.ignore_index)
        pred = torch.from_numpy(analysis.prediction.reshape(-1))
        self.confusion += confusion_matrix(pred[valid], y[valid], self.num_classes, None)
        softmax = self._pixels(unit_temperature_probs(analysis), valid)
        self.calibration["softmax"].update(softmax, y[valid])
        if self.temperature is not None:
            self.calibration["softmax_scaled"].update(rescale(softmax, 1.0 / self.temperature, dim=1), y[valid])
        self.calibration["mc_mean"].update(self._pixels(analysis.mean_probs, valid), y[valid])
        wrong = pred[valid] != y[valid]
        ood = (y == self.ood_label) if self.ood_label is not None else torch.zeros_like(valid)
        for name in DETECTION_MAPS:
            if name in analysis.unavailable:
                continue
            score, _lo, _hi = get_map(name).uncertainty_score(analysis.maps[name].reshape(-1), self.num_classes)
            s = torch.from_numpy(np.ascontiguousarray(score))
            self.errors.setdefault(name, DetectionStats()).update(s[valid], wrong)
            if self.ood_label is not None:
                kept = valid | ood
                self.ood.setdefault(name, DetectionStats()).update(s[kept], ood[kept])
        self.images += 1

    def result(self, class_names: Iterable[str]) -> EvaluationResult:
        """All metrics so far."""
        quality = segmentation_scores(self.confusion)
        return EvaluationResult(
            images=self.images,
            segmentation=SegmentationResult(
                miou=quality.miou,
                pixel_accuracy=quality.pixel_accuracy,
                pixels=quality.pixels,
                iou_per_class=dict(zip(class_names, quality.iou, strict=True)),
            ),
            calibration={k: v.result() for k, v in self.calibration.items()},
            error_detection={k: DetectionResult(auroc=v.auroc(), aurc=v.aurc()) for k, v in self.errors.items()},
            ood_detection={k: OodResult(auroc=v.auroc()) for k, v in self.ood.items()} if self.ood_label is not None else None,
            ood_label=self.ood_label,
            ignore_index=self.ignore_index,
        )
