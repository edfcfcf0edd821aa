"""Segmentation quality from a streamed confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from app.defaults import IGNORE_INDEX
from app.metrics.pixels import scored_pixels

__all__ = ["SegmentationScores", "confusion_matrix", "segmentation_scores"]


@dataclass(frozen=True)
class SegmentationScores:
    """Quality of a prediction on the scored pixels.

    Attributes:
        iou: Per-class IoU in class order; ``None`` for a class absent from targets and predictions.
        miou: Mean IoU over the classes present in targets or predictions (NaN when nothing was scored).
        pixel_accuracy: Share of scored pixels predicted correctly (NaN when nothing was scored).
        pixels: Scored pixels.
    """

    iou: list[float | None]
    miou: float
    pixel_accuracy: float
    pixels: int


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """Count (target, prediction) pairs over the scored pixels (:func:`~app.metrics.pixels.scored_pixels`).

    Args:
        pred: ``(...)`` predicted class indices.
        target: ``(...)`` true class indices, same shape.
        num_classes: ``C``.
        ignore_index: Target value whose pixels are skipped (and any value outside ``[0, C)``).

    Raises:
        ValueError: shapes differ, or a counted prediction is not in ``[0, C)``.

    Returns:
        ``(C, C)`` int64 matrix, rows are targets.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = scored_pixels(t, num_classes, ignore_index)
    t, p = t[keep], p[keep]
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ValueError(f"predictions must be class indices in [0, {num_classes}), got values from {int(p.min())} to {int(p.max())}")
    idx = t * num_classes + p
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_scores(confusion: torch.Tensor) -> SegmentationScores:
    """Per-class IoU, mIoU (over classes present in targets or predictions) and pixel accuracy."""
    cm = confusion.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    present = union > 0
    total = cm.sum()
    return SegmentationScores(
        iou=[None if torch.isnan(v) else float(v) for v in iou],
        miou=float(iou[present].mean()) if present.any() else float("nan"),
        pixel_accuracy=float(tp.sum() / total) if total > 0 else float("nan"),
        pixels=int(total),
    )
