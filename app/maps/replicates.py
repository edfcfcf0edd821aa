"""Streaming MC statistics kept per jackknife group, and the leave-one-group-out replicate maps.

Shapes: ``(B, C, H, W)`` probabilities in, ``(B, G, H, W)`` replicate maps out. See
:mod:`app.maps.mc_error` for how the replicates become standard errors.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from app.maps.functions import class_argmax
from app.maps.mc_error import group_count, sample_groups
from app.maps.moments import StreamingMoments, UncertaintyMaps, finalize
from app.maps.registry import SAMPLED_MAPS

__all__ = ["GroupedMoments", "finalize_grouped"]


class GroupedMoments:
    """:class:`~app.maps.moments.StreamingMoments` of each group of contiguous sample ids.

    Samples ``0 … T-1`` fall into :func:`~app.maps.mc_error.group_count` groups (one when ``T < 2``).
    Memory is ``G`` times that of one :class:`StreamingMoments`, whatever ``T`` is.

    Args:
        shift: ``(B, C, H, W)`` shift of every group's sums (the deterministic softmax), or ``None``.
        samples: ``T``.
        groups: Jackknife groups wanted (``MC_GROUPS`` by default; 0 or 1: none); fewer when ``T`` is smaller.
    """

    def __init__(self, shift: torch.Tensor | None, samples: int, groups: int | None = None) -> None:
        count = group_count(samples) if groups is None else group_count(samples, groups) if groups >= 2 else 0
        self.samples = samples
        self.ranges = sample_groups(samples, max(count, 1))
        self.parts = [StreamingMoments(shift) for _ in self.ranges]
        self.shift = shift

    @property
    def groups(self) -> int:
        """``G`` (1: no error estimate)."""
        return len(self.parts)

    def update(self, probs: torch.Tensor, ids: range, entropies: torch.Tensor | None = None) -> None:
        """Add the sample-major chunk of consecutive sample ``ids``: ``probs`` is ``(len(ids) * B, C, H, W)``."""
        per = probs.shape[0] // len(ids)
        for part, span in zip(self.parts, self.ranges, strict=True):
            lo, hi = max(span.start, ids.start), min(span.stop, ids.stop)
            if lo < hi:
                rows = slice((lo - ids.start) * per, (hi - ids.start) * per)
                part.update(probs[rows], hi - lo, entropies=None if entropies is None else entropies[rows])

    def total(self) -> StreamingMoments:
        """The moments of all samples."""
        out = StreamingMoments(self.shift)
        for part in self.parts:
            if part.sum_d is None or part.sum_d2 is None or part.sum_h is None:
                raise ValueError("a group has no samples yet")
            if out.sum_d is None or out.sum_d2 is None or out.sum_h is None:
                out.sum_d, out.sum_d2, out.sum_h = part.sum_d.clone(), part.sum_d2.clone(), part.sum_h.clone()
            else:
                out.sum_d += part.sum_d
                out.sum_d2 += part.sum_d2
                out.sum_h += part.sum_h
            out.count += part.count
        return out


def finalize_grouped(probs: torch.Tensor, moments: GroupedMoments) -> UncertaintyMaps:
    """:func:`~app.maps.moments.finalize` of all samples, with ``replicates`` of every sampled map when ``G >= 2``.

    ``replicates[name][:, g]`` is the map made without group ``g``'s samples, by the same formulas as
    :func:`~app.maps.moments.finalize` (mean clamped at 0, MI and variance clamped at 0, variance of the replicate's
    own arg-max class): ``(B, G, H, W)`` float32.
    """
    total = moments.total()
    maps = finalize(probs, total)
    if moments.groups < 2:
        return maps
    if total.sum_d is None or total.sum_d2 is None or total.sum_h is None:
        raise ValueError("no samples accumulated")
    b, _, h, w = probs.shape
    replicates = {name: torch.empty(b, moments.groups, h, w, dtype=torch.float32, device=probs.device) for name in SAMPLED_MAPS}
    for g, part in enumerate(moments.parts):
        if part.sum_d is None or part.sum_d2 is None or part.sum_h is None:
            raise ValueError("a group has no samples yet")
        n = total.count - part.count
        mean_d = torch.sub(total.sum_d, part.sum_d).div_(n)
        mean = (mean_d + moments.shift if moments.shift is not None else mean_d.clone()).clamp_(min=0.0)
        top = class_argmax(mean, keepdim=True)
        entropy = torch.special.entr(mean).sum(1)
        expected = torch.sub(total.sum_h, part.sum_h).div_(n)
        second = (total.sum_d2.gather(1, top) - part.sum_d2.gather(1, top)).div_(n)
        chosen = mean_d.gather(1, top)
        replicates["entropy"][:, g] = entropy
        replicates["expected_entropy"][:, g] = expected
        replicates["mutual_information"][:, g] = (entropy - expected).clamp_(min=0.0)
        replicates["variance"][:, g] = second.sub_(chosen * chosen).clamp_(min=0.0).squeeze(1)
    return replace(maps, replicates=replicates)
