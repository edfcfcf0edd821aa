"""Test-time augmentations: what each ``tta`` mode runs, how an input is augmented and how a pass's
probabilities are mapped back to the input's frame.

Every mode's first augmentation is the identity, so pass 0 is the plain analysis:

- ``"none"``: the identity only.
- ``"flips"``: identity, horizontal, vertical, both (4 passes). Flipping back is a permutation of the
  pixels, exact.
- ``"flips+scales"``: the four flips at each of the scales 1, 0.75 and 1.25 (12 passes). The input is
  resized bilinearly (antialiased when shrinking) to the scale, rounded to the network stride; the pass's
  probabilities are resized back bilinearly and renormalised to sum to 1 over the classes.
- ``"photometric"``: identity and three seeded jitters of brightness, contrast and gamma (4 passes), no
  geometric change: on ``v = x·std + mean`` (pixel values in ``[0, 1]``),
  ``v' = clip((clip(v, 0, 1)^γ − ½)·c + ½ + b, 0, 1)`` with ``b ~ U(−0.1, 0.1)``, ``c ~ U(0.8, 1.2)``,
  ``log γ ~ U(log 0.8, log 1.25)``, drawn from a generator seeded by ``(seed, augmentation index)``. The
  transform is pointwise (pivot ½, not the image mean), so a tile of an image gets exactly the pixels
  the whole image would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from app.defaults import TTA_MODES
from app.maps.functions import entropy

__all__ = ["TTA_MODES", "Augmentation", "Jitter", "augment", "restore", "restore_samples", "tta_plan"]

FLIPS = ((False, False), (True, False), (False, True), (True, True))
SCALES = (1.0, 0.75, 1.25)
JITTERS = 3
BRIGHTNESS = 0.1
CONTRAST = (0.8, 1.2)
GAMMA = (0.8, 1.25)
_JITTER_STREAM = 0x7474


@dataclass(frozen=True)
class Jitter:
    """One photometric jitter: ``clip((v^gamma - ½)·contrast + ½ + brightness, 0, 1)``."""

    brightness: float
    contrast: float
    gamma: float


@dataclass(frozen=True)
class Augmentation:
    """One test-time augmentation.

    Attributes:
        flip_h: Mirror left–right.
        flip_v: Mirror top–bottom.
        scale: Resize factor of the input (1: none).
        jitter: Photometric jitter, or ``None``.
    """

    flip_h: bool = False
    flip_v: bool = False
    scale: float = 1.0
    jitter: Jitter | None = None

    @property
    def dims(self) -> tuple[int, ...]:
        """The tensor dimensions a ``(B, C, H, W)`` tensor is flipped along."""
        return (*((-2,) if self.flip_v else ()), *((-1,) if self.flip_h else ()))

    @property
    def permutes(self) -> bool:
        """Whether mapping back only permutes pixels (no resizing), so sums can be mapped back instead of samples."""
        return self.scale == 1.0

    @property
    def identity(self) -> bool:
        """Whether the augmentation changes nothing."""
        return not self.dims and self.scale == 1.0 and self.jitter is None


def _jitter(seed: int, index: int) -> Jitter:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFF, index, _JITTER_STREAM]))
    brightness = float(rng.uniform(-BRIGHTNESS, BRIGHTNESS))
    contrast = float(rng.uniform(*CONTRAST))
    gamma = float(math.exp(rng.uniform(math.log(GAMMA[0]), math.log(GAMMA[1]))))
    return Jitter(brightness, contrast, gamma)


def tta_plan(mode: str, seed: int) -> tuple[Augmentation, ...]:
    """The augmentations of ``mode`` (the identity first); photometric jitters depend on ``(seed, index)`` only.

    Raises:
        ValueError: an unknown mode.
    """
    if mode == "none":
        return (Augmentation(),)
    if mode == "flips":
        return tuple(Augmentation(h, v) for h, v in FLIPS)
    if mode == "flips+scales":
        return tuple(Augmentation(h, v, s) for s in SCALES for h, v in FLIPS)
    if mode == "photometric":
        return (Augmentation(), *(Augmentation(jitter=_jitter(seed, i)) for i in range(1, JITTERS + 1)))
    raise ValueError(f"tta must be one of {TTA_MODES}, got {mode!r}")


def _scaled(length: int, scale: float, stride: int) -> int:
    return max(stride, round(length * scale / stride) * stride)


def augment(aug: Augmentation, x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], stride: int) -> torch.Tensor:
    """The augmented copy of a normalised ``(B, 3, H, W)`` input (``x`` itself for the identity).

    Args:
        aug: The augmentation.
        x: Normalised input, ``H`` and ``W`` multiples of ``stride``.
        mean: Normalisation mean per channel (to undo it for a jitter).
        std: Normalisation std per channel.
        stride: Scaled sizes are rounded to multiples of it.
    """
    out = x
    if aug.jitter is not None:
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        j = aug.jitter
        v = (out * s + m).clamp_(0.0, 1.0).pow_(j.gamma)
        v = v.sub_(0.5).mul_(j.contrast).add_(0.5 + j.brightness).clamp_(0.0, 1.0)
        out = (v - m) / s
    if aug.scale != 1.0:
        h, w = x.shape[-2:]
        size = (_scaled(h, aug.scale, stride), _scaled(w, aug.scale, stride))
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=False, antialias=aug.scale < 1.0)
    if aug.dims:
        out = out.flip(aug.dims)
    return out


def restore(aug: Augmentation, probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Map ``(N, C, h, w)`` probabilities of an augmented pass back to the input frame ``(N, C, H, W)``.

    Flips are undone exactly; a scaled pass is resized back bilinearly and renormalised over the classes.
    """
    out = probs.flip(aug.dims) if aug.dims else probs
    if tuple(out.shape[-2:]) != tuple(size):
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        out = out / out.sum(dim=1, keepdim=True)
    return out


def restore_samples(aug: Augmentation, probs: torch.Tensor, entropies: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Map a pass's ``(N, C, h, w)`` sample probabilities and their ``(N, h, w)`` entropies back to the input frame.

    A pass that only flips permutes pixels, so its entropies are flipped with its probabilities (exactly, and the
    identity returns both as they are); a resized pass's probabilities are renormalised by :func:`restore`, so
    their entropy is that of the restored probabilities.

    Returns:
        ``(N, C, H, W)`` probabilities and ``(N, H, W)`` entropies.
    """
    restored = restore(aug, probs, size)
    if not aug.permutes:
        return restored, entropy(restored)
    return restored, entropies.flip(aug.dims) if aug.dims else entropies
