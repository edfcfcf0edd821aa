"""The Rao–Blackwellised tiled head: a factorised head's MC statistics with each pixel's strongest channels summed exactly.

For a network where :func:`~app.engine.tiled_head.tileable` holds, the image is cut into row tiles as in
:class:`~app.engine.tiled_head.TiledHeadSampler`. Per tile, the per-channel head outputs are computed once; every
draw then keeps its sampled mask on all channels but the pixel's ``k`` strongest (:mod:`app.maps.rao_blackwell`), which
are summed over exactly, and the draws' group sums are finalised into bias-corrected maps and linearised jackknife
replicates (:mod:`app.maps.rb_finalize`) while the tile is still in the cache. Draws use independent (``"iid"``)
masks, so the groups are independent and the jackknife applies as written.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from app.defaults import MC_GROUPS
from app.engine.cancel import CancelToken, checkpoint, progress_steps
from app.engine.compiled import Kernel
from app.engine.dropout import SamplingPlan
from app.engine.network import SegmentationNet
from app.engine.tiled_head import DEFAULT_TILE_BYTES, TiledHeadSampler
from app.maps.functions import softmax_confidence
from app.maps.mc_error import group_count, sample_groups
from app.maps.moments import UncertaintyMaps
from app.maps.rao_blackwell import draw_moments, enumeration, tile_branches
from app.maps.rb_finalize import GroupSums, finalize_block, finalize_sums
from app.maps.registry import SAMPLED_MAPS

__all__ = ["DRAW_KERNEL", "FINALIZE_KERNEL", "RB_SCHEME", "EnumeratingHead", "RaoBlackwellHead"]

RB_SCHEME = "iid"

DRAW_KERNEL = Kernel(draw_moments)


def _same_maps(got: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...]) -> bool:
    """Float maps equal to rounding; the arg-max (index 2) equal but for near ties (≥ 99 % of pixels)."""
    floats = [i for i in range(len(expected)) if i != 2]
    close = all(torch.allclose(got[i], expected[i], rtol=1e-4, atol=1e-6, equal_nan=True) for i in floats)
    return close and float((got[2] == expected[2]).float().mean()) >= 0.99


FINALIZE_KERNEL = Kernel(finalize_sums, compare=_same_maps)


class EnumeratingHead(TiledHeadSampler):
    """A tileable head whose ``k`` strongest channels per pixel are summed over exactly.

    Args:
        net: A network for which :func:`~app.engine.tiled_head.tileable` holds.
        decoded: ``(B, K, H, W)`` decoder output.
        enumerated: ``k``, the channels summed over exactly at each pixel (at most ``K``).
        tile_bytes: Target size of one tile's largest temporary.
    """

    def __init__(self, net: SegmentationNet, decoded: torch.Tensor, enumerated: int, tile_bytes: int = DEFAULT_TILE_BYTES) -> None:
        super().__init__(net, decoded, tile_bytes)
        self.enumerated = max(0, min(enumerated, self.k))
        self.keep = 1.0 - float(self.dropout.p)

    def tile_parts(self, r0: int, r1: int) -> torch.Tensor:
        """Per-channel head outputs ``(B, K, C, n)`` of rows ``r0:r1``."""
        b, k, _, w = self.shape
        tile = F.conv2d(self.padded[:, :, r0 : r1 + 2 * self.ph], self.weight, None, 1, (0, self.pw), 1, groups=k)
        return tile.reshape(b, k, self.classes, (r1 - r0) * w)


class RaoBlackwellHead(EnumeratingHead):
    """Rao–Blackwellised draws of a tileable head, tile by tile (arguments as :class:`EnumeratingHead`)."""

    def maps(self, seed: int, samples: int, temperature: float, cancel: CancelToken | None = None, groups: int | None = None) -> UncertaintyMaps:
        """The maps of ``samples`` draws (ids ``0..samples-1``) with replicates when ``groups`` allows (``None``: ``MC_GROUPS``).

        The bias correction uses ``min(MC_GROUPS, T)`` groups even when no replicates are asked for (``groups`` 0 or 1).
        """
        b, k, h, w = self.shape
        c, device, dtype = self.classes, self.padded.device, self.padded.dtype
        wanted = MC_GROUPS if groups is None else groups
        count = group_count(samples, wanted if wanted >= 2 else MC_GROUPS)
        spans = sample_groups(samples, max(count, 1))
        plan = SamplingPlan(seed, tuple(range(samples)), RB_SCHEME)
        masks = self.dropout.masks(plan, torch.Size((samples * b, k, 1, 1)), device, dtype).view(samples, b, k).transpose(0, 1).contiguous()
        probs = torch.empty(b, c, h, w, device=device)
        full = {name: torch.empty(b, c, h, w, device=device) for name in ("mean_probs", "class_variance")}
        flat = {name: torch.empty(b, h, w, device=device) for name in ("entropy", "expected_entropy", "mutual_information", "variance")}
        prediction = torch.empty(b, h, w, dtype=torch.int64, device=device)
        keep_replicates = wanted >= 2 and count >= 2
        replicates = {name: torch.empty(b, len(spans), h, w, device=device) for name in SAMPLED_MAPS} if keep_replicates else None
        branches = 2**self.enumerated
        per_row = 4 * c * w * max(k + 2 * len(spans) + 2, branches * 3)
        rows = max(1, min(h, self.tile_bytes // max(per_row, 1)))
        per_draw = 4 * rows * w * (3 * c + 1 if DRAW_KERNEL.mode == "compiled" else 3 * branches * c)
        chunk = max(2, self.tile_bytes // per_draw)
        row_done = progress_steps(cancel, -(-h // rows), "row tile")
        bias = self.bias.view(-1) if self.bias is not None else torch.zeros(c, device=device, dtype=dtype)
        tau = torch.tensor(float(temperature), device=device, dtype=dtype)
        patterns, weights = enumeration(self.enumerated, self.keep, device, dtype)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            n = (r1 - r0) * w
            det, rest, log_s = tile_branches(self.tile_parts(r0, r1), bias, patterns, tau, self.enumerated)
            probs[:, :, r0:r1] = det.view(b, c, r1 - r0, w)
            sums = GroupSums([len(s) for s in spans], b, c, n, device)
            for s0 in range(0, samples, chunk):
                checkpoint(cancel)
                s1 = min(samples, s0 + chunk)
                sums.add(s0, *DRAW_KERNEL(masks[:, s0:s1], rest, bias, tau, log_s, weights))
            out: dict[str, torch.Tensor] = {name: t[:, :, r0:r1].view(b, c, n) for name, t in full.items()}
            out.update({name: t[:, r0:r1].view(b, n) for name, t in flat.items()})
            out["prediction"] = prediction[:, r0:r1].view(b, n)
            reps = {name: t[:, :, r0:r1].view(b, len(spans), n) for name, t in replicates.items()} if replicates is not None else None
            finalize_block(sums, out, reps, FINALIZE_KERNEL)
            row_done()
        return UncertaintyMaps(
            prediction=prediction,
            confidence=softmax_confidence(probs),
            probs=probs,
            samples=samples,
            replicates=replicates,
            estimator="rao_blackwellised",
            enumerated=self.enumerated,
            mean_probs=full["mean_probs"],
            class_variance=full["class_variance"],
            entropy=flat["entropy"],
            expected_entropy=flat["expected_entropy"],
            mutual_information=flat["mutual_information"],
            variance=flat["variance"],
        )
