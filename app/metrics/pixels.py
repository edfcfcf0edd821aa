"""The one rule for which labelled pixels are scored."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["CORRECT", "NOT_SCORED", "WRONG", "error_codes", "scored_pixels"]


def scored_pixels(labels: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """Pixels whose label is a class of the model and not ``ignore_index``.

    Args:
        labels: Mask values, any shape.
        num_classes: ``C``; values outside ``[0, C)`` (an OOD label, say) are not scored.
        ignore_index: Mask value that is never scored, or ``None``.

    Returns:
        Boolean tensor of ``labels``' shape.
    """
    keep = (labels >= 0) & (labels < num_classes)
    if ignore_index is not None:
        keep &= labels != ignore_index
    return keep


CORRECT, WRONG, NOT_SCORED = 0, 1, 2


def error_codes(prediction: np.ndarray, mask: np.ndarray, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """Per pixel: ``0`` correct, ``1`` wrong, ``2`` not scored (the pixels :func:`scored_pixels` leaves out).

    Args:
        prediction: ``(H, W)`` class indices.
        mask: ``(H, W)`` labels.
        num_classes: ``C``.
        ignore_index: Mask value that is never scored.

    Returns:
        ``(H, W)`` uint8.
    """
    scored = scored_pixels(torch.from_numpy(np.ascontiguousarray(mask)), num_classes, ignore_index).numpy()
    wrong = (prediction != mask).astype(np.uint8)
    return np.where(scored, wrong, np.uint8(NOT_SCORED)).astype(np.uint8)
