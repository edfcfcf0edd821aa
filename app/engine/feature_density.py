"""The features a :class:`~app.maps.density.FeatureDensity` scores: the decoder output the segmentation head sees.

For a model with dropout only before the head (the default) the deterministic prefix *is* the decoder output, so the
feature-distance map costs no extra pass; with dropout inside the decoder or encoder the decoder output of the
deterministic pass (every dropout off) is captured by a hook during one extra deterministic tail pass.
"""

from __future__ import annotations

import threading
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from app.engine.network import SegmentationNet
from app.maps.density import FeatureDensity

__all__ = ["FEATURES", "density_map", "head_input", "supports_density"]

FEATURES = "decoder output (the segmentation head's input) of the deterministic pass"


def supports_density(net: SegmentationNet) -> bool:
    """Whether ``net`` has a decoder output to score: an smp-shaped model (encoder, decoder, segmentation head)."""
    return bool(getattr(net, "staged", False)) and isinstance(getattr(net.model, "decoder", None), nn.Module)


def head_input(net: SegmentationNet, cached: Any, x: torch.Tensor | None = None) -> torch.Tensor:
    """The decoder output of the deterministic pass.

    Args:
        net: An smp-shaped network (:func:`supports_density`), eval mode.
        cached: ``net.prefix(x)``, or ``None`` to run ``net(x)`` whole.
        x: The input; needed when ``cached`` is ``None``.

    Raises:
        ValueError: a network without a decoder, or neither ``cached`` nor ``x``.
    """
    if not supports_density(net):
        raise ValueError("feature density needs an smp-shaped model (encoder, decoder, segmentation_head)")
    if cached is not None and net.first_stochastic_stage == "head":
        return cast(torch.Tensor, cached)
    if cached is None and x is None:
        raise ValueError("head_input needs the prefix output or the input")
    owner = threading.get_ident()
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, _args: object, out: torch.Tensor) -> None:
        if threading.get_ident() == owner and not captured:
            captured.append(out)

    handle = cast(nn.Module, net.model.decoder).register_forward_hook(keep)
    try:
        with torch.inference_mode():
            net.tail(cached, 1) if cached is not None else net(cast(torch.Tensor, x))
    finally:
        handle.remove()
    return captured[0]


def density_map(net: SegmentationNet, cached: Any, x: torch.Tensor, density: FeatureDensity) -> torch.Tensor:
    """The feature-distance map of ``x``: ``(B, H, W)`` float32 in ``[0, 1]`` at the input's size.

    Decoders whose output is coarser than the input (the head upsamples) have ``d²`` upsampled bilinearly
    before it is turned into a percentile.

    Args:
        net: The network (eval mode).
        cached: ``net.prefix(x)``, or ``None`` (a full deterministic pass is run).
        x: The padded, normalised ``(B, 3, H, W)`` input.
        density: The fitted density.
    """
    features = head_input(net, cached, x)
    squared = density.squared_distance(features)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    if squared.shape[-2:] != size:
        squared = F.interpolate(squared.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
    return density.percentile(squared)
