"""The Rao–Blackwellised tiled head: a factorised head's MC statistics with each pixel's strongest channels summed exactly.

For a network where :func:`~app.engine.tiled_head.tileable` holds, the image is cut into row tiles as in
:class:`~app.engine.tiled_head.TiledHeadSampler`. Per tile, the per-channel head outputs are computed once; every
draw then keeps its sampled mask on all channels but the pixel's ``k`` widest (:mod:`app.maps.rao_blackwell`), which
are summed over exactly, and the draws' group sums are finalised into bias-corrected maps and jackknife replicates
while the tile is still in the cache. Each block of ``L`` pixels of a row draws its own masks
(:mod:`app.engine.block_masks`): every pixel's estimator is unchanged, but the errors of different blocks are
independent, so image and region means average them out. The draws of a pixel are independent, so its groups are
too; with three groups or more the maps are bias-corrected by the delete-a-group jackknife
(:mod:`app.maps.rb_jackknife`), with fewer by the second-order term alone (:mod:`app.maps.rb_finalize`).
The head's outputs are carried relative to class 0 and the draws' exponentials factorised (:mod:`app.maps.rb_relative`).
"""

from __future__ import annotations

import torch

from app.defaults import JACKKNIFE_ORDER, MC_GROUPS
from app.engine.block_masks import block_length, block_masks, to_blocks, write_blocks
from app.engine.cancel import CancelToken, checkpoint, progress_steps
from app.engine.compiled import Kernel
from app.engine.network import SegmentationNet
from app.engine.tiled_head import TiledHeadSampler
from app.maps.functions import softmax_confidence
from app.maps.head_parts import per_channel_outputs
from app.maps.mc_error import group_count, sample_groups
from app.maps.moments import UncertaintyMaps
from app.maps.rao_blackwell import draw_logits, enumeration
from app.maps.rb_finalize import MAP_ORDER, REPLICATED, GroupSums, finalize_sums, t_widening
from app.maps.rb_jackknife import jackknife_maps
from app.maps.rb_relative import SAFE_NORM, factorised_grouped_moments, relative_branch_moments, relative_grouped_moments, tile_branches
from app.maps.registry import SAMPLED_MAPS

__all__ = [
    "DIRECT_GROUPED_KERNEL",
    "DRAW_KERNEL",
    "FINALIZE_KERNEL",
    "GROUPED_KERNEL",
    "JACKKNIFE_KERNEL",
    "PARTS_KERNEL",
    "RB_TILE_BYTES",
    "EnumeratingHead",
    "RaoBlackwellHead",
    "draw_count",
    "finalize_blocks",
]

DRAW_KERNEL = Kernel(relative_branch_moments)
PARTS_KERNEL = Kernel(per_channel_outputs, atol=1e-5)
GROUPED_KERNEL = Kernel(factorised_grouped_moments)
DIRECT_GROUPED_KERNEL = Kernel(relative_grouped_moments)
RB_TILE_BYTES = 32 * 2**20


def _same_maps(got: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...], atol: float = 1e-6) -> bool:
    """Float maps equal to rounding; the arg-max (index 2) equal but for near ties (≥ 99 % of pixels)."""
    floats = [i for i in range(len(expected)) if i != 2]
    close = all(torch.allclose(got[i], expected[i], rtol=1e-4, atol=atol, equal_nan=True) for i in floats)
    return close and float((got[2] == expected[2]).float().mean()) >= 0.99


def _same_jackknifed(got: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...]) -> bool:
    """As :func:`_same_maps`, to 2e-5: ``G θ - Σ w θ₋g`` multiplies float32 rounding (1e-7 of values near 1) by ``G``."""
    return _same_maps(got, expected, atol=2e-5)


FINALIZE_KERNEL = Kernel(finalize_sums, compare=_same_maps)
JACKKNIFE_KERNEL = Kernel(jackknife_maps, compare=_same_jackknifed)


def _same_branches(got: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...]) -> bool:
    """The softmax equal to rounding; ≥ 99 % of the branch factors equal (a near tie may pick another channel)."""
    if not torch.allclose(got[0], expected[0], rtol=1e-4, atol=1e-6):
        return False
    same = [torch.isclose(g, e, rtol=1e-4, atol=1e-5) for g, e in zip(got[1:], expected[1:], strict=True)]
    return all(float(s.float().mean()) >= 0.99 for s in same)


BRANCHES_KERNEL = Kernel(tile_branches, compare=_same_branches)


def finalize_blocks(
    sums: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    sizes: list[int],
    batch: int,
    width: int,
    out: dict[str, torch.Tensor],
    replicates: dict[str, torch.Tensor] | None,
    order: float = JACKKNIFE_ORDER,
) -> None:
    """Write the maps of a tile's block-major group sums into ``out`` (``(B, C, n)`` / ``(B, n)`` views) and ``replicates`` (``(B, G, n)``).

    Args:
        sums: Group sums of ``P``, ``Q`` ``(N, G, C, L)`` and ``H`` ``(N, G, L)``.
        sizes: Draws per group.
        batch: ``B``.
        width: ``W``.
        out: The maps' views to fill.
        replicates: Sampled map name → view to fill, or ``None``.
        order: ``α`` of the entropy's jackknife.

    With three groups or more the maps are jackknife bias-corrected (:func:`~app.maps.rb_jackknife.jackknife_maps`),
    else second-order corrected (:func:`~app.maps.rb_finalize.finalize_sums`); replicates need two groups or more.
    """
    p, q, h = sums
    g = len(sizes)
    sizes_t = torch.tensor(sizes, dtype=torch.float32, device=p.device)
    widen = torch.tensor(t_widening(g) if g >= 2 else 1.0, device=p.device)
    if g >= 3:
        result = JACKKNIFE_KERNEL(p, q, h, sizes_t, widen, torch.tensor(float(order), device=p.device))
    else:
        result = FINALIZE_KERNEL(p.transpose(0, 1), q.transpose(0, 1), h.transpose(0, 1), sizes_t, widen, replicates is not None and g >= 2)
        if len(result) > 7:
            result = (*result[:7], result[7].transpose(1, 2))
    for name, value in zip(MAP_ORDER, result[:7], strict=True):
        write_blocks(out[name], value, batch, width)
    if replicates is not None and g >= 2:
        for name, value in zip(REPLICATED, result[7], strict=True):
            write_blocks(replicates[name], value, batch, width)


def draw_count(samples: int, enumerated: int) -> int:
    """Draws of ``2^k`` exact branches that ``samples`` head evaluations per pixel buy: ``max(1, samples // 2^k)``."""
    return max(1, samples // (1 << enumerated))


class EnumeratingHead(TiledHeadSampler):
    """A tileable head whose ``k`` strongest channels per pixel are summed over exactly.

    Args:
        net: A network for which :func:`~app.engine.tiled_head.tileable` holds.
        decoded: ``(B, K, H, W)`` decoder output.
        enumerated: ``k``, the channels summed over exactly at each pixel (at most ``K``).
        tile_bytes: Target size of one tile's largest temporary.
    """

    def __init__(self, net: SegmentationNet, decoded: torch.Tensor, enumerated: int, tile_bytes: int = RB_TILE_BYTES) -> None:
        super().__init__(net, decoded, tile_bytes)
        self.enumerated = max(0, min(enumerated, self.k))
        self.keep = 1.0 - float(self.dropout.p)

    def outputs(self, framed: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """:func:`~app.maps.head_parts.per_channel_outputs` compiled (:data:`PARTS_KERNEL`), as the head's other kernels are."""
        outputs: torch.Tensor = PARTS_KERNEL(framed, weight)
        return outputs

    def tile_parts(self, r0: int, r1: int) -> torch.Tensor:
        """Per-channel head outputs ``(B, K, C, n)`` of rows ``r0:r1``."""
        return self.parts(r0, r1, self.weight)


class RaoBlackwellHead(EnumeratingHead):
    """Rao–Blackwellised draws of a tileable head, tile by tile (arguments as :class:`EnumeratingHead`)."""

    def __init__(self, net: SegmentationNet, decoded: torch.Tensor, enumerated: int, tile_bytes: int = RB_TILE_BYTES) -> None:
        super().__init__(net, decoded, enumerated, tile_bytes)
        self.relative_weight = (self.weight[:, 1:] - self.weight[:, :1]).contiguous()
        bias = self.bias.view(-1) if self.bias is not None else torch.zeros(self.classes, device=decoded.device, dtype=decoded.dtype)
        self.relative_bias = bias[1:] - bias[0]

    def relative_parts(self, r0: int, r1: int) -> torch.Tensor:
        """Per-channel head outputs of rows ``r0:r1`` relative to class 0: ``(B, K, C-1, n)``, ``a_kc - a_k0`` for ``c >= 1``.

        A softmax is unchanged by subtracting class 0's logit from every class, and the head is linear, so the
        head convolution with class 0's weights subtracted gives them directly: a fifth less to compute and carry
        through every draw at ``C = 5``.
        """
        return self.parts(r0, r1, self.relative_weight)

    def maps(
        self,
        seed: int,
        samples: int,
        temperature: float,
        cancel: CancelToken | None = None,
        groups: int | None = None,
        order: float = JACKKNIFE_ORDER,
    ) -> UncertaintyMaps:
        """The maps of ``samples`` head evaluations per pixel, spent as :func:`draw_count` draws of ``2^k`` branches each.

        Replicates come when ``groups`` allows (``None``: ``MC_GROUPS``); the bias correction uses
        ``min(MC_GROUPS, draws)`` groups even when no replicates are asked for (``groups`` 0 or 1), the entropy's of
        order ``order`` (:func:`~app.maps.rb_jackknife.jackknife_maps`).
        """
        b, k, h, w = self.shape
        c, device, dtype = self.classes, self.padded.device, self.padded.dtype
        draws = draw_count(samples, self.enumerated)
        wanted = MC_GROUPS if groups is None else groups
        count = group_count(draws, wanted if wanted >= 2 else MC_GROUPS)
        spans = sample_groups(draws, max(count, 1))
        probs = torch.empty(b, c, h, w, device=device)
        full = {name: torch.empty(b, c, h, w, device=device) for name in ("mean_probs", "class_variance")}
        flat = {name: torch.empty(b, h, w, device=device) for name in ("entropy", "expected_entropy", "mutual_information", "variance")}
        prediction = torch.empty(b, h, w, dtype=torch.int64, device=device)
        keep_replicates = wanted >= 2 and count >= 2
        replicates = {name: torch.empty(b, len(spans), h, w, device=device) for name in SAMPLED_MAPS} if keep_replicates else None
        branches = 2**self.enumerated
        per_row = 4 * c * w * max(k + 2 * len(spans) + 2, branches * 3)
        draw_row = 4 * w * 3 * branches * c
        rows = max(1, min(h, self.tile_bytes // max(per_row, draw_row * draws, 1)))
        chunk = max(2, self.tile_bytes // (draw_row * rows))
        row_done = progress_steps(cancel, -(-h // rows), "row tile")
        bias = self.relative_bias
        tau = torch.tensor(float(temperature), device=device, dtype=dtype)
        patterns, weights = enumeration(self.enumerated, self.keep, device, dtype)
        length = block_length(w, h)
        sizes = [len(s) for s in spans]
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            n = (r1 - r0) * w
            det, rest, log_s = BRANCHES_KERNEL(self.relative_parts(r0, r1), bias, patterns, tau, self.enumerated)
            probs[:, :, r0:r1] = det.view(b, c, r1 - r0, w)
            rest_blocks = to_blocks(rest.view(b, k, c - 1, n), length, w).reshape(-1, k, (c - 1) * length)
            log_blocks = to_blocks(log_s, length, w)
            masks = block_masks(seed, self.dropout.site, float(self.dropout.p), range(r0, r1), b, w, length, draws, k).to(device, dtype)
            sums = self._draws(masks, rest_blocks, log_blocks, bias, tau, weights, sizes, chunk, cancel)
            out: dict[str, torch.Tensor] = {name: t[:, :, r0:r1].view(b, c, n) for name, t in full.items()}
            out.update({name: t[:, r0:r1].view(b, n) for name, t in flat.items()})
            out["prediction"] = prediction[:, r0:r1].view(b, n)
            reps = {name: t[:, :, r0:r1].view(b, len(spans), n) for name, t in replicates.items()} if replicates is not None else None
            finalize_blocks(sums, sizes, b, w, out, reps, order)
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

    @staticmethod
    def _draws(
        masks: torch.Tensor,
        rest: torch.Tensor,
        log_s: torch.Tensor,
        bias: torch.Tensor,
        tau: torch.Tensor,
        weights: torch.Tensor,
        sizes: list[int],
        chunk: int,
        cancel: CancelToken | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Group sums ``(N, G, C, L)``, ``(N, G, L)`` of a tile's draws: masks ``(N, T, K)``, ``rest`` ``(N, K, (C-1)·L)`` and ``bias``
        ``(C-1,)`` relative to class 0, ``log_s`` ``(N, S, C, L)``.

        All draws in one kernel when they fit one chunk and the groups are equal (factorised exponentials, or the
        direct ones where a pixel's logits span too far for them), else chunk by chunk into
        :class:`~app.maps.rb_finalize.GroupSums`.
        """
        n, samples, _ = masks.shape
        c, length = log_s.shape[2], log_s.shape[3]
        if chunk >= samples and len(set(sizes)) == 1:
            checkpoint(cancel)
            raw = torch.bmm(masks, rest).view(n, samples, c - 1, length)
            p, q, h, smallest = GROUPED_KERNEL(raw, bias, tau, log_s, weights, len(sizes))
            if float(smallest) < SAFE_NORM:
                z = (raw + bias.view(1, 1, -1, 1)) / tau
                p, q, h = DIRECT_GROUPED_KERNEL(z, log_s, weights, len(sizes))
            return p, q, h
        sums = GroupSums(sizes, n, c, length, masks.device)
        for s0 in range(0, samples, chunk):
            checkpoint(cancel)
            s1 = min(samples, s0 + chunk)
            sums.add(s0, *DRAW_KERNEL(draw_logits(masks[:, s0:s1], rest, bias, tau, c - 1), log_s, weights))
        return sums.p.transpose(0, 1), sums.q.transpose(0, 1), sums.h.transpose(0, 1)
