"""Monte-Carlo dropout modules with per-sample, seeded masks.

An :class:`MCDropout` behaves like ``nn.Dropout2d`` (``mode="channel"``) or
``nn.Dropout`` (``mode="element"``) while training. At inference it is the
identity, unless a :func:`sampling_plan` is active in the current context: then
its mask for MC sample ``t`` is drawn by :func:`~app.engine.dropout_masks.keep_masks`
from generators seeded by ``(seed, t, site)`` (``"iid"``) or by ``(seed, block of t,
site)`` (``"stratified"``, balanced across the samples of a block; the default).
Masks therefore depend only on the request's seed, the sample's index and the
site, never on chunking, thread interleaving or the global RNG, so a batched pass
and one full forward per sample see identical masks, and the model itself can
stay in ``eval()`` mode while concurrent requests sample.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from app.defaults import DEFAULT_MASK_SCHEME
from app.engine.dropout_masks import MASK_SCHEMES, keep_masks, mask_seed

__all__ = ["DROPOUT_MODES", "MASK_SCHEMES", "MCDropout", "SamplingPlan", "mask_seed", "sampling_plan"]

DROPOUT_MODES = ("channel", "element")


@dataclass(frozen=True)
class SamplingPlan:
    """Which MC samples a batch holds.

    The batch is sample-major: rows ``[i*B:(i+1)*B]`` belong to sample
    ``sample_ids[i]`` for ``B`` images.

    Attributes:
        seed: Seeds every mask.
        sample_ids: The samples, in batch order.
        scheme: ``"stratified"`` or ``"iid"`` (see :mod:`app.engine.dropout_masks`); ``None``: each module's own.
    """

    seed: int
    sample_ids: tuple[int, ...]
    scheme: str | None = None


_PLAN: contextvars.ContextVar[SamplingPlan | None] = contextvars.ContextVar("mc_sampling_plan", default=None)


@contextmanager
def sampling_plan(seed: int, sample_ids: Sequence[int], scheme: str | None = None) -> Iterator[SamplingPlan]:
    """Activate seeded MC dropout for the forward passes inside the block."""
    plan = SamplingPlan(int(seed), tuple(int(t) for t in sample_ids), scheme)
    token = _PLAN.set(plan)
    try:
        yield plan
    finally:
        _PLAN.reset(token)


class MCDropout(nn.modules.dropout._DropoutNd):
    """Dropout that can be sampled with seeded masks at inference.

    Args:
        p: Drop probability.
        mode: ``"channel"`` (whole feature maps, like ``Dropout2d``) or ``"element"``.
        site: Index of this site, mixed into the mask seed.
        scheme: How MC masks relate across samples when the plan does not say (see :mod:`app.engine.dropout_masks`).
    """

    def __init__(self, p: float, mode: str = "channel", site: int = 0, scheme: str = DEFAULT_MASK_SCHEME) -> None:
        if mode not in DROPOUT_MODES:
            raise ValueError(f"dropout mode must be one of {DROPOUT_MODES}, got {mode!r}")
        if scheme not in MASK_SCHEMES:
            raise ValueError(f"mask scheme must be one of {MASK_SCHEMES}, got {scheme!r}")
        super().__init__(p=p)
        self.mode = mode
        self.site = site
        self.scheme = scheme

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}, site={self.site}, scheme={self.scheme}"

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
        if self.p >= 1.0:  # everything dropped, like F.dropout(p=1); dividing by 1 - p would give 0/0 = NaN
            return torch.zeros(shape[0], *per[1:], device=device, dtype=dtype)
        parts = keep_masks(plan.seed, plan.sample_ids, self.site, self.p, per, device, plan.scheme or self.scheme)
        return torch.cat(parts).to(dtype) / (1.0 - self.p)
