"""Tensor geometry: normalise an RGB image, pad it to the network stride and crop maps back."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["crop", "pad_to_stride", "to_tensor"]


def to_tensor(rgb: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → normalised ``(1, 3, H, W)`` float32: ``(x/255 - mean) / std``."""
    x = torch.from_numpy(np.array(rgb, order="C")).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return ((x - m) / s).unsqueeze(0)


def pad_to_stride(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``(B, C, H, W)`` on the bottom and right to multiples of ``stride``.

    Reflect padding is used where the image is larger than the pad, edge
    replication otherwise (e.g. a 1×1 image).

    Returns:
        The padded tensor and the original ``(H, W)`` for :func:`crop`.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def crop(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop the last two dimensions back to ``size = (H, W)``."""
    h, w = size
    return t[..., :h, :w]
