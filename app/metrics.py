"""Segmentation quality from a streamed confusion matrix."""

from __future__ import annotations

import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = 255) -> torch.Tensor:
    """Count (target, prediction) pairs.

    Args:
        pred: ``(...)`` predicted class indices.
        target: ``(...)`` true class indices, same shape.
        num_classes: ``C``.
        ignore_index: Target value whose pixels are skipped (and any value ``>= C``).

    Raises:
        ValueError: shapes differ, or a counted prediction is not in ``[0, C)``.

    Returns:
        ``(C, C)`` int64 matrix, rows are targets.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = (t >= 0) & (t < num_classes)
    if ignore_index is not None:
        keep &= t != ignore_index
    t, p = t[keep], p[keep]
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ValueError(f"predictions must be class indices in [0, {num_classes}), got values from {int(p.min())} to {int(p.max())}")
    idx = t * num_classes + p
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_scores(confusion: torch.Tensor) -> dict[str, object]:
    """Per-class IoU, mIoU (over classes present in targets or predictions) and pixel accuracy."""
    cm = confusion.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    present = union > 0
    total = cm.sum()
    return {
        "iou": [None if torch.isnan(v) else float(v) for v in iou],
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "pixels": int(total),
    }
