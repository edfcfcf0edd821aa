"""All MC samples of a factorised dropout head, computed tile by tile in cache.

The factorised head (see :mod:`app.fasthead`) makes every sample a ``K``-term
mask-weighted sum of per-channel head outputs. Done for the whole image, each
of the ~10 elementwise passes per sample (softmax, entropy, the moment sums)
streams the full ``T×C×H×W`` block through main memory, which costs more than
the network itself. Here the image is cut into row tiles small enough that a
tile's per-channel outputs, its logits for a chunk of samples and every
temporary stay in the CPU cache; each tile is folded into the running sums
before the next is computed. Masks are drawn exactly as
:class:`~app.dropout.MCDropout` draws them, so results equal the plain tail up
to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from app.engine.cancel import CancelToken, checkpoint, progress_steps
from app.engine.dropout import MCDropout, SamplingPlan
from app.engine.factorised_head import factorisable, head_after_is_identity
from app.engine.network import SegmentationNet
from app.maps.head_parts import per_channel_outputs
from app.maps.moments import StreamingMoments
from app.maps.replicates import GroupedMoments, empty_replicates

DEFAULT_TILE_BYTES = 4 * 2**20


def tileable(net: SegmentationNet) -> bool:
    """Whether :class:`TiledHeadSampler` applies: factorisable, stride-1 head conv, nothing after it."""
    if not factorisable(net):
        return False
    conv = cast(nn.Conv2d, cast(nn.Sequential, net.model.segmentation_head)[0])
    return conv.stride == (1, 1) and conv.dilation == (1, 1) and isinstance(conv.padding, tuple) and head_after_is_identity(net)


class TiledHeadSampler:
    """Stream the MC samples of a tileable head into moment sums and jackknife replicates, tile by tile.

    Args:
        net: A network for which :func:`tileable` holds.
        decoded: ``(B, K, H, W)`` decoder output.
        tile_bytes: Target size of one tile's logits block.
    """

    def __init__(self, net: SegmentationNet, decoded: torch.Tensor, tile_bytes: int = DEFAULT_TILE_BYTES) -> None:
        conv = cast(nn.Conv2d, cast(nn.Sequential, net.model.segmentation_head)[0])
        self.dropout = cast(MCDropout, net.dropouts[0])
        self.k = decoded.shape[1]
        self.classes = conv.out_channels
        ph, pw = cast(tuple[int, int], conv.padding)
        self.ph = ph
        self.weight = conv.weight.transpose(0, 1).contiguous()
        self.bias = conv.bias.view(1, 1, self.classes, 1, 1) if conv.bias is not None else None
        b, k, h, w = decoded.shape
        self.padded = decoded.new_zeros(b, k, h + 2 * ph, w + 2 * pw)
        self.padded[:, :, ph : ph + h, pw : pw + w] = decoded
        self.shape = decoded.shape
        self.tile_bytes = tile_bytes

    def parts(self, r0: int, r1: int, weight: torch.Tensor) -> torch.Tensor:
        """Per-channel outputs ``(B, K, M, n)`` of rows ``r0:r1`` for a ``(K, M, kh, kw)`` weight, contiguous."""
        outputs = self.outputs(self.padded[:, :, r0 : r1 + 2 * self.ph], weight)
        return outputs.reshape(self.shape[0], self.k, weight.shape[1], (r1 - r0) * self.shape[3])

    def outputs(self, framed: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """:func:`~app.maps.head_parts.per_channel_outputs`, eager (the library's grouped convolution): the sampled
        path compiles nothing, so a full-resolution analysis does not pay the compiler's time and memory."""
        return per_channel_outputs(framed, weight)

    def run(
        self, seed: int, samples: int, temperature: float, cancel: CancelToken | None = None, groups: int | None = None, replicate_step: int = 1
    ) -> tuple[torch.Tensor, StreamingMoments, dict[str, torch.Tensor] | None]:
        """The deterministic softmax, the sums of ``samples`` MC samples (ids ``0..samples-1``) and the jackknife replicates.

        The deterministic logits are the unmasked sum of the per-channel parts, so the head convolution runs once
        per tile for both. Each tile's samples are summed per jackknife group, and the tile's leave-one-group-out
        maps (:func:`~app.maps.replicates.replicate_block`) are made while its sums are still in the cache.

        Args:
            seed: Request seed of the dropout masks.
            samples: ``T >= 1``.
            temperature: ``τ`` in ``softmax(z / τ)``.
            cancel: Checked before every chunk of samples of every row tile.
            groups: Jackknife groups (``None``: ``MC_GROUPS``; 0 or 1: one group, no replicates).
            replicate_step: Make the replicate maps on every ``replicate_step``-th row and column only (from row and
                column 0): ``(B, G, ⌈H/s⌉, ⌈W/s⌉)``, for callers that only take their means.

        Returns:
            ``(B, C, H, W)`` deterministic probabilities ``p``, the moments of all samples shifted by ``p``, and the
            ``(B, G, H, W)`` replicate maps (``None`` with fewer than two groups).
        """
        b, _, h, w = self.shape
        device = self.padded.device
        sum_d = torch.empty(b, self.classes, h, w, dtype=torch.float32, device=device)
        sum_d2 = torch.empty_like(sum_d)
        sum_h = torch.empty(b, h, w, dtype=torch.float32, device=device)
        groups_count = GroupedMoments(None, samples, groups).groups
        step = replicate_step
        replicates = empty_replicates(b, groups_count, -(-h // step), -(-w // step), device) if groups_count >= 2 else None

        def sink(r0: int, r1: int, tile_groups: GroupedMoments) -> None:
            tile_total = tile_groups.total()
            sum_d[:, :, r0:r1], sum_d2[:, :, r0:r1], sum_h[:, r0:r1] = _sums(tile_total)
            first = -(-r0 // step) * step
            if replicates is not None and first < r1:
                rows = slice(first // step, (r1 - 1) // step + 1)
                pixels = (slice(first - r0, r1 - r0, step), slice(0, w, step))
                tile_groups.replicates(tile_total, {name: out[:, :, rows] for name, out in replicates.items()}, pixels=pixels)

        probs = self.stream(seed, samples, temperature, sink, cancel, groups)
        total = StreamingMoments(probs)
        total.sum_d, total.sum_d2, total.sum_h, total.count = sum_d, sum_d2, sum_h, samples
        return probs, total, replicates

    def stream(
        self,
        seed: int,
        samples: int,
        temperature: float,
        sink: Callable[[int, int, GroupedMoments], None],
        cancel: CancelToken | None = None,
        groups: int | None = None,
    ) -> torch.Tensor:
        """Hand each row tile's per-group sums of ``samples`` MC samples to ``sink(r0, r1, sums)``; the deterministic softmax.

        ``sums`` is the :class:`~app.maps.replicates.GroupedMoments` of rows ``r0:r1``, shifted by the deterministic
        softmax of those rows; it is only valid during the call.

        Args:
            seed: Seed of the dropout masks.
            samples: ``T >= 1``.
            temperature: ``τ`` in ``softmax(z / τ)``.
            sink: Called once per row tile, top to bottom.
            cancel: Checked before every chunk of samples of every row tile.
            groups: Jackknife groups (``None``: ``MC_GROUPS``; 0 or 1: one group).

        Returns:
            ``(B, C, H, W)`` deterministic probabilities ``p``.
        """
        b, k, h, w = self.shape
        c = self.classes
        device, dtype = self.padded.device, self.padded.dtype
        plan = SamplingPlan(seed, tuple(range(samples)))
        masks = self.dropout.masks(plan, torch.Size((samples * b, k, 1, 1)), device, dtype)
        masks = torch.cat([torch.ones(1, b, k, device=device, dtype=dtype), masks.view(samples, b, k)]).transpose(0, 1).contiguous()
        row_bytes = c * w * self.padded.element_size()
        rows = max(1, min(h, self.tile_bytes // max(row_bytes * (samples + 1), 1)))
        chunk = max(1, min(samples + 1, self.tile_bytes // (row_bytes * rows)))
        probs = torch.empty(b, c, h, w, dtype=torch.float32, device=device)
        row_done = progress_steps(cancel, -(-h // rows), "row tile")
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            parts = self.parts(r0, r1, self.weight).view(b, k, c * (r1 - r0) * w)
            shift = None
            tile_groups = GroupedMoments(None, samples, groups)
            tile_groups.zeros(b, c, r1 - r0, w, device)
            for s0 in range(0, samples + 1, chunk):
                checkpoint(cancel)
                m = masks[:, s0 : s0 + chunk]
                z = torch.bmm(m, parts).view(b, m.shape[1], c, r1 - r0, w)
                if self.bias is not None:
                    z += self.bias
                if temperature != 1.0:
                    z /= temperature
                zm = z - z.amax(dim=2, keepdim=True)
                p = zm.exp()
                norm = p.sum(dim=2, keepdim=True)
                p.div_(norm)
                ent = norm.squeeze(2).log_() - _class_dot(p, zm)
                first = s0 - 1
                if shift is None:
                    shift = p[:, :1].clone()
                    probs[:, :, r0:r1] = shift[:, 0]
                    p, ent, first = p[:, 1:], ent[:, 1:], 0
                d = p.sub_(shift)
                tile_groups.add(range(first, first + d.shape[1]), d, ent)
            tile_groups.shift = probs[:, :, r0:r1]
            sink(r0, r1, tile_groups)
            row_done()
        return probs


def _class_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_c a·b`` over dim 2 of ``(B, n, C, h, w)`` tensors, ``(B, n, h, w)``: one fused multiply-add per class over
    contiguous planes (a third faster than a reduction across the class axis)."""
    out = a[:, :, 0] * b[:, :, 0]
    for c in range(1, a.shape[2]):
        out.addcmul_(a[:, :, c], b[:, :, c])
    return out


def _sums(moments: StreamingMoments) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if moments.sum_d is None or moments.sum_d2 is None or moments.sum_h is None:
        raise ValueError("no samples accumulated")
    return moments.sum_d, moments.sum_d2, moments.sum_h
