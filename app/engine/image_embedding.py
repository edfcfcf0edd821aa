"""One vector per image to compare images by what the network sees in them (for picking a diverse batch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from app.engine.ensemble import members_of
from app.engine.feature_density import head_input, supports_density
from app.engine.network import SegmentationNet

__all__ = ["image_embedding"]


def _pooled(net: SegmentationNet, x: torch.Tensor) -> torch.Tensor:
    features = head_input(net, None, x) if supports_density(net) else net(x).softmax(dim=1)
    return F.normalize(features.float().mean(dim=(-2, -1)), dim=1)


def image_embedding(net: SegmentationNet, x: torch.Tensor) -> torch.Tensor:
    """The unit-length spatial mean of the deterministic pass's decoder output (the segmentation head's input).

    A network without a decoder to read (not smp-shaped) gives its spatially pooled class probabilities instead; an
    ensemble, its members' vectors side by side (scaled back to unit length).

    Args:
        net: The network, eval mode (dropout off: the deterministic pass).
        x: ``(B, 3, H, W)`` normalised images.

    Returns:
        ``(B, F)`` float32, each row of L2 norm 1 (``F``: decoder channels or ``C``, summed over an ensemble's members).
    """
    with torch.inference_mode():
        return F.normalize(torch.cat([_pooled(member, x) for member in members_of(net)], dim=1), dim=1)
