"""Streaming MC statistics kept per jackknife group, and the leave-one-group-out replicate maps.

Shapes: ``(B, C, H, W)`` probabilities in, ``(B, G, H, W)`` replicate maps out. See
:mod:`app.maps.mc_error` for how the replicates become standard errors.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from app.maps.mc_error import group_count, sample_groups
from app.maps.moments import StreamingMoments, UncertaintyMaps, finalize
from app.maps.registry import SAMPLED_MAPS

__all__ = ["REPLICATE_BLOCK_BYTES", "GroupedMoments", "empty_replicates", "finalize_grouped"]

REPLICATE_BLOCK_BYTES = 4 * 2**20


class GroupedMoments:
    """Sums of MC samples per group of contiguous sample ids: ``Σ (p_t - s)``, ``Σ (p_t - s)²``, ``Σ H[p_t]``.

    Samples ``0 … T-1`` fall into :func:`~app.maps.mc_error.group_count` groups (one when ``T < 2``), whose sums
    are stacked along a leading group axis. Memory is ``G`` times that of one
    :class:`~app.maps.moments.StreamingMoments`, whatever ``T`` is.

    With ``passes > 1`` (several passes of ``T`` samples each, :mod:`app.engine.passes`), every pass adds its own
    samples ``0 … T-1``: group ``g`` holds those sample ids of every pass, the total counts ``passes × T`` samples
    and leaving group ``g`` out keeps ``passes × (T - |g|)``.

    Args:
        shift: ``(B, C, H, W)`` shift of the sums (the deterministic softmax), or ``None``.
        samples: ``T``.
        groups: Jackknife groups wanted (``MC_GROUPS`` by default; 0 or 1: none); fewer when ``T`` is smaller.
        passes: Passes adding samples ``0 … T-1`` each.
    """

    def __init__(self, shift: torch.Tensor | None, samples: int, groups: int | None = None, passes: int = 1) -> None:
        count = group_count(samples) if groups is None else group_count(samples, groups) if groups >= 2 else 0
        self.samples = samples
        self.passes = passes
        self.ranges = sample_groups(samples, max(count, 1)) if samples else [range(0)]
        self.shift = shift
        self.sum_d: torch.Tensor | None = None
        self.sum_d2: torch.Tensor | None = None
        self.sum_h: torch.Tensor | None = None

    @property
    def groups(self) -> int:
        """``G`` (1: no error estimate)."""
        return len(self.ranges)

    def zeros(self, batch: int, classes: int, height: int, width: int, device: torch.device) -> None:
        """Start from zero sums of a ``(B, C, H, W)`` block."""
        self.sum_d = torch.zeros(self.groups, batch, classes, height, width, dtype=torch.float32, device=device)
        self.sum_d2 = torch.zeros_like(self.sum_d)
        self.sum_h = torch.zeros(self.groups, batch, height, width, dtype=torch.float32, device=device)

    def add(self, ids: range, d: torch.Tensor, entropies: torch.Tensor) -> None:
        """Add shifted samples ``d`` ``(B, n, C, H, W)`` and their entropies ``(B, n, H, W)`` of consecutive sample ``ids``."""
        if self.sum_d is None or self.sum_d2 is None or self.sum_h is None:
            self.zeros(d.shape[0], d.shape[2], d.shape[3], d.shape[4], d.device)
        assert self.sum_d is not None and self.sum_d2 is not None and self.sum_h is not None
        spans = [(g, max(span.start, ids.start), min(span.stop, ids.stop)) for g, span in enumerate(self.ranges)]
        spans = [(g, lo - ids.start, hi - ids.start) for g, lo, hi in spans if lo < hi]
        if len(spans) > 1 and len({hi - lo for _, lo, hi in spans}) == 1:
            self._add_equal(spans, d, entropies)
            return
        for g, lo, hi in spans:
            self.sum_h[g] += entropies[:, lo:hi].sum(dim=1)
            self.sum_d[g] += d[:, lo:hi].sum(dim=1)
            self.sum_d2[g] += d[:, lo:hi].square().sum(dim=1)

    def _add_equal(self, spans: list[tuple[int, int, int]], d: torch.Tensor, entropies: torch.Tensor) -> None:
        """:meth:`add` of consecutive groups ``(g, lo, hi)`` that each get the same number of samples, in one sum per statistic."""
        assert self.sum_d is not None and self.sum_d2 is not None and self.sum_h is not None
        g0, g1 = spans[0][0], spans[-1][0] + 1
        lo, hi = spans[0][1], spans[-1][2]
        per = spans[0][2] - spans[0][1]
        for j in range(per):
            picked = slice(lo + j, hi, per)
            x = d[:, picked].transpose(0, 1)
            self.sum_h[g0:g1] += entropies[:, picked].transpose(0, 1)
            self.sum_d[g0:g1] += x
            self.sum_d2[g0:g1].addcmul_(x, x)

    def update(self, probs: torch.Tensor, ids: range, entropies: torch.Tensor) -> None:
        """Add the sample-major chunk of consecutive sample ``ids``: ``probs`` ``(n * B, C, H, W)``, ``entropies`` ``(n * B, H, W)``."""
        n = len(ids)
        per = probs.float().view(n, -1, *probs.shape[1:])
        d = per - self.shift if self.shift is not None else per
        self.add(ids, d.transpose(0, 1), entropies.float().view(n, -1, *entropies.shape[1:]).transpose(0, 1))

    def total(self) -> StreamingMoments:
        """The moments of all samples."""
        if self.sum_d is None or self.sum_d2 is None or self.sum_h is None:
            raise ValueError("no samples accumulated")
        out = StreamingMoments(self.shift)
        out.sum_d, out.sum_d2, out.sum_h, out.count = self.sum_d.sum(0), self.sum_d2.sum(0), self.sum_h.sum(0), self.samples * self.passes
        return out

    def replicates(
        self,
        total: StreamingMoments,
        out: dict[str, torch.Tensor],
        block_bytes: int = REPLICATE_BLOCK_BYTES,
        pixels: tuple[slice, slice] = (slice(None), slice(None)),
    ) -> None:
        """Write the leave-one-group-out maps into ``out[name]`` ``(B, G, H, W)``, all groups at once.

        Made by the same formulas as :func:`~app.maps.moments.finalize` (mean clamped at 0, MI and variance clamped
        at 0, variance of the replicate's own arg-max class, the first on ties). Rows are done in blocks whose
        ``(G, B, C, rows, W)`` temporaries take about ``block_bytes`` each, so the extra memory stays small next to
        the sums themselves whatever the image size.

        Args:
            total: :meth:`total` of these sums.
            out: Sampled map name → ``(B, G, H, W)`` float32 tensors (views are fine) to fill.
            block_bytes: Size of one temporary of a row block.
            pixels: ``(rows, columns)`` slices of the sums to make replicates of (e.g. every second row and column:
                ``out`` is then that sub-grid's size); all pixels by default.
        """
        if self.sum_d is None or self.sum_d2 is None or self.sum_h is None or total.sum_d is None or total.sum_d2 is None or total.sum_h is None:
            raise ValueError("no samples accumulated")
        ys, xs = pixels
        sum_d, sum_d2, sum_h = self.sum_d[..., ys, xs], self.sum_d2[..., ys, xs], self.sum_h[..., ys, xs]
        all_d, all_d2, all_h = total.sum_d[..., ys, xs], total.sum_d2[..., ys, xs], total.sum_h[..., ys, xs]
        shifts = self.shift[..., ys, xs] if self.shift is not None else None
        g, b, c, h, w = sum_d.shape
        rows = max(1, min(h, block_bytes // max(4 * g * b * c * w, 1)))
        kept = torch.tensor([self.passes * (self.samples - len(span)) for span in self.ranges], dtype=torch.float32, device=sum_d.device)
        for r0 in range(0, h, rows):
            r = slice(r0, min(h, r0 + rows))
            shift = shifts[:, :, r] if shifts is not None else None
            sums = (all_d[:, :, r], all_d2[:, :, r], all_h[:, r])
            mine = (sum_d[:, :, :, r], sum_d2[:, :, :, r], sum_h[:, :, r])
            _replicate_block(kept, shift, sums, mine, {name: m[:, :, r] for name, m in out.items()})


def _replicate_block(
    kept: torch.Tensor,
    shift: torch.Tensor | None,
    total: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    mine: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    out: dict[str, torch.Tensor],
) -> None:
    """The replicate maps of one row block: ``total`` = all samples' sums, ``mine`` = the per-group sums (see :meth:`GroupedMoments.replicates`)."""
    sum_d, sum_d2, sum_h = mine
    mean_d = torch.sub(total[0], sum_d).div_(kept.view(-1, 1, 1, 1, 1))
    mean = (mean_d + shift if shift is not None else mean_d.clone()).clamp_(min=0.0)
    top = mean.max(dim=2, keepdim=True).indices
    entropy = torch.special.entr(mean).sum(2)
    del mean
    expected = torch.sub(total[2], sum_h).div_(kept.view(-1, 1, 1, 1))
    second = torch.sub(total[1].expand_as(sum_d2).gather(2, top), sum_d2.gather(2, top)).div_(kept.view(-1, 1, 1, 1, 1))
    chosen = mean_d.gather(2, top)
    out["entropy"].copy_(entropy.transpose(0, 1))
    out["expected_entropy"].copy_(expected.transpose(0, 1))
    out["mutual_information"].copy_((entropy - expected).clamp_(min=0.0).transpose(0, 1))
    out["variance"].copy_(second.sub_(chosen * chosen).clamp_(min=0.0).squeeze(2).transpose(0, 1))


def empty_replicates(batch: int, groups: int, height: int, width: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Uninitialised ``(B, G, H, W)`` float32 replicate maps, one per sampled map."""
    return {name: torch.empty(batch, groups, height, width, dtype=torch.float32, device=device) for name in SAMPLED_MAPS}


def finalize_grouped(probs: torch.Tensor, moments: GroupedMoments) -> UncertaintyMaps:
    """:func:`~app.maps.moments.finalize` of all samples, with ``replicates`` of every sampled map when ``G >= 2``."""
    total = moments.total()
    maps = finalize(probs, total)
    if moments.groups < 2:
        return maps
    b, _, h, w = probs.shape
    replicates = empty_replicates(b, moments.groups, h, w, probs.device)
    moments.replicates(total, replicates)
    return replace(maps, replicates=replicates)
