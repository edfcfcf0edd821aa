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

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from app.engine.cancel import CancelToken, checkpoint
from app.engine.dropout import MCDropout, SamplingPlan
from app.engine.factorised_head import factorisable, head_after_is_identity
from app.engine.network import SegmentationNet
from app.maps.replicates import GroupedMoments

DEFAULT_TILE_BYTES = 4 * 2**20


def tileable(net: SegmentationNet) -> bool:
    """Whether :class:`TiledHeadSampler` applies: factorisable, stride-1 head conv, nothing after it."""
    if not factorisable(net):
        return False
    conv = cast(nn.Conv2d, cast(nn.Sequential, net.model.segmentation_head)[0])
    return conv.stride == (1, 1) and conv.dilation == (1, 1) and isinstance(conv.padding, tuple) and head_after_is_identity(net)


class TiledHeadSampler:
    """Stream the MC samples of a tileable head into :class:`~app.maps.replicates.GroupedMoments`.

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
        kh, kw = conv.kernel_size
        ph, pw = cast(tuple[int, int], conv.padding)
        self.ph, self.pw = ph, pw
        self.weight = conv.weight.permute(1, 0, 2, 3).reshape(self.k * self.classes, 1, kh, kw)
        self.bias = conv.bias.view(1, 1, self.classes, 1, 1) if conv.bias is not None else None
        self.padded = F.pad(decoded, (0, 0, ph, ph))
        self.shape = decoded.shape
        self.tile_bytes = tile_bytes

    def run(
        self, seed: int, samples: int, temperature: float, cancel: CancelToken | None = None, groups: int | None = None
    ) -> tuple[torch.Tensor, GroupedMoments]:
        """The deterministic softmax and the sums of ``samples`` MC samples (ids ``0..samples-1``), per jackknife group.

        The deterministic logits are the unmasked sum of the per-channel parts,
        so the head convolution runs once per tile for both.

        Args:
            seed: Request seed of the dropout masks.
            samples: ``T >= 1``.
            temperature: ``τ`` in ``softmax(z / τ)``.
            cancel: Checked before every chunk of samples of every row tile.
            groups: Jackknife groups (``None``: ``MC_GROUPS``; 0 or 1: one group, no error estimate).

        Returns:
            ``(B, C, H, W)`` deterministic probabilities ``p`` and the moments, shifted by ``p``.
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
        moments = GroupedMoments(probs, samples, groups)
        for part, span in zip(moments.parts, moments.ranges, strict=True):
            part.sum_d, part.sum_d2 = torch.zeros_like(probs), torch.zeros_like(probs)
            part.sum_h = torch.zeros(b, h, w, dtype=torch.float32, device=device)
            part.count = len(span)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            tile = F.conv2d(self.padded[:, :, r0 : r1 + 2 * self.ph], self.weight, None, 1, (0, self.pw), 1, groups=k)
            parts = tile.reshape(b, k, c * (r1 - r0) * w)
            shift = None
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
                ent = norm.squeeze(2).log_() - torch.linalg.vecdot(p, zm, dim=2)
                first = s0 - 1
                if shift is None:
                    shift = p[:, :1].clone()
                    probs[:, :, r0:r1] = shift[:, 0]
                    p, ent, first = p[:, 1:], ent[:, 1:], 0
                d = p.sub_(shift)
                self._fold(moments, range(first, first + d.shape[1]), d, ent, slice(r0, r1))
        return probs, moments

    @staticmethod
    def _fold(moments: GroupedMoments, ids: range, d: torch.Tensor, ent: torch.Tensor, rows: slice) -> None:
        """Add the deviations ``d`` ``(B, n, C, h, W)`` and entropies ``(B, n, h, W)`` of samples ``ids`` to their groups' rows."""
        for part, span in zip(moments.parts, moments.ranges, strict=True):
            lo, hi = max(span.start, ids.start), min(span.stop, ids.stop)
            if lo >= hi or part.sum_d is None or part.sum_d2 is None or part.sum_h is None:
                continue
            block = slice(lo - ids.start, hi - ids.start)
            part.sum_h[:, rows] += ent[:, block].sum(dim=1)
            part.sum_d[:, :, rows] += d[:, block].sum(dim=1)
            part.sum_d2[:, :, rows] += d[:, block].square().sum(dim=1)
