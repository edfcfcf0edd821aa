"""MediaPipe's selfie segmenter (person vs background) as an smp-shaped PyTorch module.

The layers mirror the ``selfie_segmentation.tflite`` graph of the npm package ``@mediapipe/selfie_segmentation``
(Apache-2.0), which ``scripts/import_selfie_segmenter.py`` converts into the bundle ``models/person/``:

- **encoder** (MobileNetV3-like, output stride 16): a 3×3 stride-2 stem with hard-swish, then eight inverted
  residual blocks (1×1 expansion, depthwise 3×3 or 5×5, optional squeeze-excite with a logistic gate, linear 1×1
  projection, identity shortcut when the shape is kept). It returns the features at strides 2, 4, 8 and 16.
- **decoder**: a gated 1×1 context layer at stride 16 (``relu(conv(x)) · σ(conv(mean(x)))``, as LR-ASPP), then
  three up-blocks to stride 2, each: bilinear ×2 (half-pixel centres) → 1×1 conv to the skip's width
  → squeeze-excite gate of ``skip + up`` applied to the skip, plus ``up`` → a 1×1 conv and a depthwise 3×3
  refinement added to it.
- **segmentation_head**: MediaPipe's ``Convolution2DTransposeBias`` (2×2, stride 2, one output channel: the
  person logit ``z``), then :class:`TwoClassLogits`: logits ``[0, z]``, whose softmax is ``[1 - σ(z), σ(z)]``.

Convolutions pad as TensorFlow's ``SAME`` does (asymmetrically for stride 2: the extra row and column go to the
bottom and right), so any input whose sides are multiples of 16 gives the TFLite model's result at 256 × 256.
The global average pools of the graph (a pool as large as its input) are means over the whole feature map, so
other input sizes work too. Input: ``(B, 3, H, W)`` RGB in ``[0, 1]`` (card normalisation mean 0, std 1).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SELFIE_ARCH",
    "SELFIE_STRIDE",
    "SameConv2d",
    "SelfieDecoder",
    "SelfieEncoder",
    "SelfieSegmenter",
    "TwoClassLogits",
    "build_selfie",
    "is_selfie",
]

SELFIE_ARCH = "mediapipe.selfie_segmentation"
"""``architecture.arch`` of a card that holds this network."""
SELFIE_STRIDE = 16
"""Input sides must be multiples of this (four stride-2 layers)."""


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding of one axis: ``(before, after)``, the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A convolution padded as TensorFlow's ``padding="SAME"``: output side ``ceil(input / stride)``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel side.
        stride: Stride of both axes.
        groups: ``in_channels`` for a depthwise convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` → ``(B, C_out, ceil(H / s), ceil(W / s))``."""
        k, s = self.kernel_size[0], self.stride[0]
        if k > 1:
            top, bottom = _same_padding(int(x.shape[-2]), k, s)
            left, right = _same_padding(int(x.shape[-1]), k, s)
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class SqueezeExcite(nn.Module):
    """Channel gate ``σ(expand(relu(reduce(mean_{H,W}(x)))))``: ``(B, C, H, W)`` → ``(B, C, 1, 1)`` in ``(0, 1)``.

    Args:
        channels: ``C``.
        hidden: Width of the bottleneck.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.reduce = SameConv2d(channels, hidden)
        self.expand = SameConv2d(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The gate of ``x``: ``(B, C, 1, 1)``."""
        pooled = x.mean(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.expand(F.relu(self.reduce(pooled))))


class InvertedResidual(nn.Module):
    """MobileNetV3 block: 1×1 expansion, depthwise ``k×k``, optional squeeze-excite, linear 1×1 projection.

    Args:
        in_channels: Input channels.
        expanded: Channels of the expansion and the depthwise convolution.
        out_channels: Output channels.
        kernel: Depthwise kernel side.
        stride: Depthwise stride (1 or 2).
        hard_swish: Hard-swish activations (``False``: ReLU).
        se_hidden: Squeeze-excite bottleneck width (``None``: no squeeze-excite).
    """

    def __init__(self, in_channels: int, expanded: int, out_channels: int, kernel: int, stride: int, hard_swish: bool, se_hidden: int | None) -> None:
        super().__init__()
        self.expand = SameConv2d(in_channels, expanded)
        self.depthwise = SameConv2d(expanded, expanded, kernel, stride, groups=expanded)
        self.se = SqueezeExcite(expanded, se_hidden) if se_hidden is not None else None
        self.project = SameConv2d(expanded, out_channels)
        self.act: nn.Module = nn.Hardswish() if hard_swish else nn.ReLU()
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` → ``(B, C_out, ceil(H / s), ceil(W / s))``."""
        y: torch.Tensor = self.act(self.depthwise(self.act(self.expand(x))))
        if self.se is not None:
            y = y * self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


# (in, expanded, out, kernel, stride, hard_swish, se_hidden); a feature is returned after blocks 0, 2 and 7.
_BLOCKS: tuple[tuple[int, int, int, int, int, bool, int | None], ...] = (
    (16, 16, 16, 3, 2, False, 8),
    (16, 72, 24, 3, 2, False, None),
    (24, 88, 24, 3, 1, False, None),
    (24, 96, 32, 5, 2, True, 24),
    (32, 128, 32, 5, 1, True, 32),
    (32, 128, 32, 5, 1, True, 32),
    (32, 96, 32, 5, 1, True, 24),
    (32, 96, 32, 5, 1, True, 24),
)
_FEATURE_AFTER = (0, 2, 7)


class SelfieEncoder(nn.Module):
    """The MobileNetV3-like encoder: ``(B, 3, H, W)`` → features at strides 2, 4, 8, 16.

    Returns (from :meth:`forward`) ``[(B, 16, H/2, W/2), (B, 16, H/4, W/4), (B, 24, H/8, W/8), (B, 32, H/16, W/16)]``.
    """

    output_stride = SELFIE_STRIDE

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(SameConv2d(3, 16, 3, 2), nn.Hardswish())
        self.blocks = nn.ModuleList(InvertedResidual(*spec) for spec in _BLOCKS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four skip features (see the class docstring)."""
        y = self.stem(x)
        features = [y]
        for index, block in enumerate(self.blocks):
            y = block(y)
            if index in _FEATURE_AFTER:
                features.append(y)
        return features


class GatedContext(nn.Module):
    """The decoder's first layer, at stride 16: ``relu(value(x)) · σ(gate(mean_{H,W}(x)))``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.value = SameConv2d(in_channels, out_channels)
        self.gate = SameConv2d(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` → ``(B, C_out, H, W)``."""
        value = F.relu(self.value(x))
        return value * torch.sigmoid(self.gate(x.mean(dim=(2, 3), keepdim=True)))


class UpBlock(nn.Module):
    """Upsample ×2, fuse with the encoder's skip through a squeeze-excite gate, refine.

    ``up = proj(bilinear(x))``; ``y = skip · SE(skip + up) + up``; ``out = r + relu(dw(r))`` with ``r = relu(conv(y))``.

    Args:
        in_channels: Channels of the coarser input.
        channels: Channels of the skip feature and of the output.
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.proj = SameConv2d(in_channels, channels)
        self.se = SqueezeExcite(channels, channels)
        self.conv = SameConv2d(channels, channels)
        self.depthwise = SameConv2d(channels, channels, 3, groups=channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, h, w)`` and ``(B, C, H, W)`` skip → ``(B, C, H, W)``."""
        up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        up = self.proj(up)
        fused = skip * self.se(skip + up) + up
        refined = F.relu(self.conv(fused))
        return refined + F.relu(self.depthwise(refined))


class SelfieDecoder(nn.Module):
    """Gated context at stride 16, then up-blocks to stride 8, 4 and 2.

    Returns (from :meth:`forward`) ``(B, 16, H/2, W/2)``: the features the segmentation head (and a head dropout site) sees.
    """

    def __init__(self) -> None:
        super().__init__()
        self.context = GatedContext(32, 128)
        self.blocks = nn.ModuleList([UpBlock(128, 24), UpBlock(24, 16), UpBlock(16, 16)])

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The encoder's four features (strides 2, 4, 8, 16) → ``(B, 16, H/2, W/2)``."""
        y: torch.Tensor = self.context(features[-1])
        for block, skip in zip(self.blocks, reversed(features[:-1]), strict=True):
            y = block(y, skip)
        return y


class TwoClassLogits(nn.Module):
    """One logit ``z`` → two-class logits ``[0, z]`` (background, person): their softmax is ``[1 - σ(z), σ(z)]``."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` → ``(B, 2, H, W)``."""
        return torch.cat([torch.zeros_like(z), z], dim=1)


class SelfieSegmenter(nn.Module):
    """The selfie segmenter: ``(B, 3, H, W)`` RGB in ``[0, 1]``, sides multiples of 16 → ``(B, 2, H, W)`` logits.

    smp-shaped (``encoder`` → ``decoder`` → ``segmentation_head``), so :class:`~app.engine.network.SegmentationNet`
    stages it: with the ``"head"`` dropout site the encoder and decoder run once per image and only the 2×2
    transposed convolution runs per MC sample.
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoder = SelfieEncoder()
        self.decoder = SelfieDecoder()
        self.segmentation_head = nn.Sequential(nn.ConvTranspose2d(16, 1, kernel_size=2, stride=2), TwoClassLogits())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` → ``(B, 2, H, W)`` logits ``[0, z]``."""
        logits: torch.Tensor = self.segmentation_head(self.decoder(self.encoder(x)))
        return logits


def is_selfie(architecture: dict[str, Any]) -> bool:
    """Whether a card's architecture is this network (``arch: "mediapipe.selfie_segmentation"``)."""
    return architecture.get("arch") == SELFIE_ARCH


def build_selfie(architecture: dict[str, Any]) -> SelfieSegmenter:
    """The untrained network of a card's architecture.

    Raises:
        ValueError: ``classes`` is not 2, or a key other than ``arch`` and ``classes`` is given.
    """
    extra = sorted(set(architecture) - {"arch", "classes"})
    if extra:
        raise ValueError(f"{SELFIE_ARCH} takes only 'arch' and 'classes', got {', '.join(extra)}")
    if architecture.get("classes", 2) != 2:
        raise ValueError(f"{SELFIE_ARCH} has 2 classes (background, person), got classes={architecture.get('classes')!r}")
    return SelfieSegmenter()
