"""Monte-Carlo dropout modules with per-sample, seeded masks.

An :class:`MCDropout` behaves like ``nn.Dropout2d`` (``mode="channel"``) or
``nn.Dropout`` (``mode="element"``) while training. At inference it is the
identity, unless a :func:`sampling_plan` is active in the current context: then
its mask for MC sample ``t`` is drawn from a generator seeded by
``(seed, t, site)``. Masks therefore depend only on the request's seed and the
sample's index, never on chunking, thread interleaving or the global RNG, so a
batched pass and one full forward per sample see identical masks, and the
model itself can stay in ``eval()`` mode while concurrent requests sample.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DROPOUT_MODES = ("channel", "element")


@dataclass(frozen=True)
class SamplingPlan:
    """Which MC samples a batch holds.

    The batch is sample-major: rows ``[i*B:(i+1)*B]`` belong to sample
    ``sample_ids[i]`` for ``B`` images.
    """

    seed: int
    sample_ids: tuple[int, ...]


_PLAN: contextvars.ContextVar[SamplingPlan | None] = contextvars.ContextVar("mc_sampling_plan", default=None)


@contextmanager
def sampling_plan(seed: int, sample_ids: Sequence[int]) -> Iterator[SamplingPlan]:
    """Activate seeded MC dropout for the forward passes inside the block."""
    plan = SamplingPlan(int(seed), tuple(int(t) for t in sample_ids))
    token = _PLAN.set(plan)
    try:
        yield plan
    finally:
        _PLAN.reset(token)


def mask_seed(seed: int, sample: int, site: int) -> int:
    """A well-mixed 63-bit generator seed for one (request seed, sample, site)."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFFFFFF, sample, site]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


class MCDropout(nn.modules.dropout._DropoutNd):
    """Dropout that can be sampled with seeded masks at inference.

    Args:
        p: Drop probability.
        mode: ``"channel"`` (whole feature maps, like ``Dropout2d``) or ``"element"``.
        site: Index of this site, mixed into the mask seed.
    """

    def __init__(self, p: float, mode: str = "channel", site: int = 0) -> None:
        if mode not in DROPOUT_MODES:
            raise ValueError(f"dropout mode must be one of {DROPOUT_MODES}, got {mode!r}")
        super().__init__(p=p)
        self.mode = mode
        self.site = site

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}, site={self.site}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = _PLAN.get()
        if plan is not None and self.p > 0:
            return x * self.masks(plan, x.shape, x.device, x.dtype)
        if not self.training or self.p == 0:
            return x
        if self.mode == "channel":
            return F.dropout2d(x, self.p, training=True)
        return F.dropout(x, self.p, training=True)

    def masks(self, plan: SamplingPlan, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Scaled keep-masks for a sample-major batch of ``shape`` ``(N, C, H, W)``."""
        n = len(plan.sample_ids)
        if shape[0] % n:
            raise ValueError(f"batch of {shape[0]} rows does not split into {n} samples")
        per = (shape[0] // n, shape[1], 1, 1) if self.mode == "channel" else (shape[0] // n, *shape[1:])
        parts = []
        for t in plan.sample_ids:
            gen = torch.Generator(device=device).manual_seed(mask_seed(plan.seed, t, self.site))
            keep = torch.rand(per, generator=gen, device=device) >= self.p
            parts.append(keep)
        if self.p >= 1.0:  # everything dropped, like F.dropout(p=1); dividing by 1 - p would give 0/0 = NaN
            return torch.zeros(shape[0], *per[1:], device=device, dtype=dtype)
        return torch.cat(parts).to(dtype) / (1.0 - self.p)
