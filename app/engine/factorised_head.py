"""Channel dropout before a linear head, factorised: T samples for the price of one.

When the only dropout site is channel dropout on the input of an smp
``SegmentationHead`` that is linear (a convolution, optional bilinear/nearest
upsampling, identity activation), every sample's logits are a mask-weighted
sum of per-channel convolution outputs::

    head(m ⊙ d) = b + Σ_k m_k · conv(d_k, W[:, k])

so the per-channel contributions are computed once (one grouped convolution)
and each sample costs a ``K``-term weighted sum instead of a convolution. The
masks are the very ones :class:`~app.dropout.MCDropout` draws for the same
plan, so results equal the plain tail up to float rounding.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from app.engine.dropout import MCDropout, SamplingPlan
from app.engine.network import HEAD_SITE, SegmentationNet


def _is_identity(module: nn.Module) -> bool:
    if isinstance(module, nn.Identity):
        return True
    inner = getattr(module, "activation", None)
    return type(module).__name__ == "Activation" and isinstance(inner, nn.Identity)


def factorisable(net: SegmentationNet) -> bool:
    """Whether ``net``'s dropout tail can use :class:`FactorisedHead`."""
    if net.sites != (HEAD_SITE,) or net.dropouts[0].mode != "channel" or not net.staged:
        return False
    head = net.model.segmentation_head
    if not isinstance(head, nn.Sequential) or len(head) == 0:
        return False
    conv, rest = head[0], list(head)[1:]
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.padding_mode != "zeros":
        return False
    for module in rest:
        upsample = isinstance(module, nn.Upsample) and module.mode in ("bilinear", "nearest")
        if not (upsample or _is_identity(module)):
            return False
    return True


def head_after_is_identity(net: SegmentationNet) -> bool:
    """Whether everything after the head's convolution is the identity (no upsampling)."""
    head = cast(nn.Sequential, net.model.segmentation_head)
    return all(_is_identity(m) for m in list(head)[1:])


class FactorisedHead:
    """Per-channel head contributions of one decoder output, ready to be mixed by masks.

    Args:
        net: A network for which :func:`factorisable` holds.
        decoded: ``(B, K, H, W)`` decoder output (the head's input).
    """

    def __init__(self, net: SegmentationNet, decoded: torch.Tensor) -> None:
        head = cast(nn.Sequential, net.model.segmentation_head)
        conv = cast(nn.Conv2d, head[0])
        self.after = list(head)[1:]
        self.dropout = cast(MCDropout, net.dropouts[0])
        b, k, _, _ = decoded.shape
        c = conv.out_channels
        weight = conv.weight.permute(1, 0, 2, 3).reshape(k * c, 1, *conv.kernel_size)
        parts = F.conv2d(decoded, weight, None, conv.stride, conv.padding, conv.dilation, groups=k)
        self.out_shape = parts.shape[-2:]
        self.parts = parts.reshape(b, k, c * parts.shape[-2] * parts.shape[-1])
        self.bias = conv.bias.view(1, c, 1, 1) if conv.bias is not None else None
        self.decoded_shape = decoded.shape
        self.classes = c

    @staticmethod
    def nbytes(decoded: torch.Tensor, classes: int) -> int:
        """Bytes the per-channel contributions of ``decoded`` take."""
        return decoded.numel() * classes * decoded.element_size()

    def logits(self, plan: SamplingPlan) -> torch.Tensor:
        """Logits of the plan's samples, sample-major ``(n * B, C, H', W')``."""
        b, k = self.decoded_shape[:2]
        n = len(plan.sample_ids)
        shape = torch.Size((n * b, k, *self.decoded_shape[2:]))
        masks = self.dropout.masks(plan, shape, self.parts.device, self.parts.dtype).view(n, b, k).transpose(0, 1)
        mixed = torch.bmm(masks, self.parts).transpose(0, 1).reshape(n * b, self.classes, *self.out_shape)
        if self.bias is not None:
            mixed = mixed + self.bias
        for module in self.after:
            mixed = module(mixed)
        return mixed
