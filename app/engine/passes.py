"""Several sources of uncertainty in one analysis: passes = ensemble members × test-time augmentations, each
drawing ``T`` MC-dropout samples, pooled into the same statistics and maps.

Pass ``k = m·A + a`` runs member ``m`` on augmentation ``a`` (:mod:`app.engine.augment`). It draws ``T`` MC samples
with its own dropout masks, seeded by :func:`pass_seed` ``(seed, k)`` (pass 0 keeps the request's seed, so a
single unaugmented pass is exactly :func:`~app.engine.sampling.run_mc`); with ``T = 0`` its deterministic pass is its
one sample. Each sample's probabilities are mapped back to the input's frame and added to one
:class:`~app.maps.replicates.GroupedMoments`, so ``p̄``, the expected entropy, MI and the variances are those of all
``passes × max(T, 1)`` samples, and memory does not grow with the passes or ``T``. The softmax confidence ``p``
(and the shift of the sums) is the deterministic pass of member 0 on the unaugmented input, and so is the feature
distance (:mod:`app.maps.density`) when a density is given.

Fast paths stay per pass: every member caches its own deterministic prefix; with head-only channel dropout and a
pass that only flips, the tiled head (:class:`~app.engine.tiled_head.TiledHeadSampler`) sums the pass's samples
row tile by row tile and the sums are flipped back into the pooled ones (:func:`app.maps.pooling.add_block`).

MC error bars (jackknife groups, :mod:`app.maps.mc_error`): what is random in such an analysis is the dropout
masks (and the photometric jitters); the members and the flips and scales are fixed. So with ``T ≥ 2`` group ``g``
holds the same sample ids ``t`` of every pass and leaving it out removes them from every pass: the bars measure
the dropout noise of the pooled maps. With ``T = 0`` and no jitter nothing is random (``error_method`` exact);
with ``T = 0`` and photometric jitter the groups are the passes (leave-one-pass-out, pass 0 being the fixed
identity among them: a rough bar).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import torch

from app.engine.augment import Augmentation, augment, restore, tta_plan
from app.engine.cancel import checkpoint
from app.engine.ensemble import members_of
from app.engine.feature_density import density_map
from app.engine.network import SegmentationNet
from app.engine.sampling import SamplingOptions, run_mc, sample_logit_chunks
from app.engine.tile_budget import TileCost, measure_cost
from app.engine.tiled_head import TiledHeadSampler, tileable
from app.maps.functions import entropy
from app.maps.moments import UncertaintyMaps
from app.maps.pooling import add_block
from app.maps.replicates import GroupedMoments, finalize_grouped

__all__ = ["PassPlan", "network_cost", "pass_plan", "pass_seed", "plan_cost", "run_passes"]

_PASS_STREAM = 0x7061


def pass_seed(seed: int, index: int) -> int:
    """The dropout-mask seed of pass ``index``: ``seed`` for pass 0, else a well-mixed seed of ``(seed, index)`` in ``[0, 2**32)``."""
    if index == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFF, index, _PASS_STREAM]).generate_state(1)[0])


@dataclass(frozen=True)
class PassPlan:
    """What an analysis runs.

    Attributes:
        members: Networks (1 unless an ensemble).
        tta: Test-time augmentation mode.
        augmentations: Its augmentations, the identity first.
        samples: MC samples ``T`` per pass.
    """

    members: int
    tta: str
    augmentations: tuple[Augmentation, ...]
    samples: int

    @property
    def passes(self) -> int:
        """Members × augmentations."""
        return self.members * len(self.augmentations)

    @property
    def draws(self) -> int:
        """Probability samples the statistics average: ``passes × max(T, 1)``, or ``T`` for one plain pass."""
        return self.samples if self.passes == 1 else self.passes * max(self.samples, 1)

    @property
    def random(self) -> bool:
        """Whether a different seed could change the maps (MC dropout, or photometric jitter)."""
        return self.samples > 0 or any(a.jitter is not None for a in self.augmentations)

    @property
    def method(self) -> str:
        """``"deterministic"``, ``"mc_dropout"``, ``"tta:flips"``, ``"ensemble(3)"`` or a combination joined by ``" + "``."""
        parts = [f"ensemble({self.members})"] if self.members > 1 else []
        parts += [f"tta:{self.tta}"] if len(self.augmentations) > 1 else []
        parts += ["mc_dropout"] if self.samples > 0 else []
        return " + ".join(parts) or "deterministic"


def pass_plan(net: SegmentationNet, tta: str, samples: int, seed: int = 0) -> PassPlan:
    """The :class:`PassPlan` of analysing with ``net`` (an ensemble or one network), ``tta`` and ``T = samples``."""
    return PassPlan(len(members_of(net)), tta, tta_plan(tta, seed), samples)


def network_cost(net: SegmentationNet, classes: int) -> TileCost:
    """:func:`~app.engine.tile_budget.measure_cost` of a network, or of an ensemble's costliest member in each term (members run one at a time)."""
    costs = [measure_cost(member, classes) for member in members_of(net)]
    return TileCost(fixed=max(c.fixed for c in costs), sample=max(c.sample for c in costs), band=max(c.band for c in costs))


def plan_cost(cost: TileCost, plan: PassPlan) -> TileCost:
    """The cost of one pass of ``plan``: a pass scaled by ``s`` runs the network on ``s²`` times the pixels."""
    scale = max(max(a.scale for a in plan.augmentations), 1.0) ** 2
    return cost if scale == 1.0 else replace(cost, fixed=cost.fixed * scale, sample=cost.sample * scale)


def run_passes(net: SegmentationNet, x: torch.Tensor, options: SamplingOptions, mean: tuple[float, ...], std: tuple[float, ...]) -> UncertaintyMaps:
    """Analyse a padded, normalised batch with every member × augmentation pass, ``T`` MC samples each.

    One network with ``tta="none"`` is :func:`~app.engine.sampling.run_mc` itself.

    Args:
        net: A network or an :class:`~app.engine.ensemble.EnsembleNet` (eval mode).
        x: ``(B, 3, H, W)`` input, ``H`` and ``W`` multiples of ``net.stride``.
        options: Samples per pass, seed, temperature, tta, chunking, strategy, error groups and cancellation.
        mean: Normalisation mean (photometric jitter works on pixel values).
        std: Normalisation std.

    Returns:
        Maps of shape ``(B, H, W)`` (probabilities ``(B, C, H, W)``), ``samples`` = the draws averaged.
    """
    members = members_of(net)
    augs = tta_plan(options.tta, options.seed)
    if len(members) == 1 and len(augs) == 1:
        return run_mc(members[0], x, options)
    if any(module.training for module in net.modules()):
        raise RuntimeError("run_passes needs the network in eval mode (only dropout is sampled); call net.eval() first")
    plan = PassPlan(len(members), options.tta, augs, options.samples)
    samples, temperature = options.samples, options.temperature
    size = (int(x.shape[-2]), int(x.shape[-1]))
    groups = options.error_groups if plan.random else 0
    pooled: GroupedMoments | None = None
    probs: torch.Tensor | None = None
    distance: torch.Tensor | None = None
    with torch.inference_mode():
        for index, (member, aug) in enumerate(itertools.product(members, augs)):
            checkpoint(options.cancel)
            xa = augment(aug, x, mean, std, member.stride)
            cached = member.prefix(xa) if options.strategy == "cached" else None
            checkpoint(options.cancel)
            if index == 0 and options.density is not None:
                distance = density_map(member, cached, xa, options.density)
            need_deterministic = index == 0 or samples == 0
            logits = (member.tail(cached, 1) if cached is not None else member(xa)) if need_deterministic else None
            if pooled is None or probs is None:
                assert logits is not None
                probs = torch.softmax(logits.float() / temperature, dim=1)
                pooled = GroupedMoments(probs, samples or plan.passes, groups, passes=plan.passes if samples else 1)
                pooled.zeros(probs.shape[0], probs.shape[1], size[0], size[1], probs.device)
            if samples == 0:
                assert logits is not None
                _add_samples(pooled, aug, logits, range(index, index + 1), temperature, size)
                continue
            seed = pass_seed(options.seed, index)
            if cached is not None and options.factorise and aug.permutes and tileable(member):
                _add_tiled(pooled, aug, TiledHeadSampler(member, cached), seed, replace(options, error_groups=groups), size[0])
                continue
            shape = logits.shape if logits is not None else (x.shape[0], probs.shape[1], *xa.shape[-2:])
            like = logits if logits is not None else torch.empty(shape, device="meta")
            for ids, sample_logits in sample_logit_chunks(member, xa, cached, like, replace(options, seed=seed)):
                _add_samples(pooled, aug, sample_logits, ids, temperature, size)
                del sample_logits
        assert pooled is not None and probs is not None
        return replace(finalize_grouped(probs, pooled), feature_distance=distance)


def _add_samples(pooled: GroupedMoments, aug: Augmentation, logits: torch.Tensor, ids: range, temperature: float, size: tuple[int, int]) -> None:
    """Softmax a pass's sample-major logits, map them back to the input frame and add them as samples ``ids``.

    The softmax and the entropy are computed as for the deterministic ``p`` and the entropy of ``p̄``
    (``torch.softmax``, ``entr``), so a pass identical to pass 0 adds exactly ``p`` and ``H[p]``.
    """
    sample_probs = restore(aug, torch.softmax(logits.float() / temperature, dim=1), size)
    pooled.update(sample_probs, ids, entropy(sample_probs))


def _add_tiled(pooled: GroupedMoments, aug: Augmentation, sampler: TiledHeadSampler, seed: int, options: SamplingOptions, height: int) -> None:
    """Stream a flip-only pass's samples through the tiled head into ``pooled``, row tile by row tile, flipped back."""

    def sink(r0: int, r1: int, block: GroupedMoments) -> None:
        rows = slice(height - r1, height - r0) if aug.flip_v else slice(r0, r1)
        add_block(pooled, block, rows, aug.dims)

    sampler.stream(seed, options.samples, options.temperature, sink, options.cancel, options.error_groups)
