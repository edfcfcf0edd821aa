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

Fast paths stay per pass: each pass's sampler (:mod:`app.engine.samplers`: tiled head, factorised head, cached tail
or full passes) is chosen once, before the first pass runs; every member caches its own deterministic prefix; with
head-only channel dropout and a pass that only flips, the tiled head sums the pass's samples row tile by row tile
and the sums are flipped back into the pooled ones (:class:`~app.engine.pool.PassPool`).

MC error bars (jackknife groups, :mod:`app.maps.mc_error`): what is random in such an analysis is the dropout
masks (and the photometric jitters); the members and the flips and scales are fixed. So with ``T ≥ 2`` group ``g``
holds the same sample ids ``t`` of every pass and leaving it out removes them from every pass: the bars measure
the dropout noise of the pooled maps. With ``T = 0`` and no jitter nothing is random (``error_method`` exact);
with ``T = 0`` and photometric jitter the groups are the passes (leave-one-pass-out, pass 0 being the fixed
identity among them: a rough bar).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from app.engine.augment import Augmentation, augment, tta_plan
from app.engine.cancel import checkpoint, progress_steps
from app.engine.ensemble import members_of
from app.engine.feature_density import density_map
from app.engine.network import SegmentationNet
from app.engine.options import SamplingOptions
from app.engine.pool import PassPool
from app.engine.samplers import PassJob, choose_sampler
from app.engine.tile_budget import TileCost, measure_cost
from app.maps.moments import UncertaintyMaps

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


def run_passes(
    net: SegmentationNet, x: torch.Tensor, options: SamplingOptions, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None
) -> UncertaintyMaps:
    """Analyse a padded, normalised batch with every member × augmentation pass, ``T`` MC samples each.

    The one skeleton of the engine: the sampler of every pass is chosen once, up front (:func:`choose_sampler`);
    then each pass is augmented, runs its deterministic prefix (``options.prefix_runner`` for the one pass of a
    single-pass analysis) and has its sampler draw into one :class:`~app.engine.pool.PassPool`. The token is checked
    between passes and after every prefix (the caller checks before the first). One network with ``tta="none"`` is
    :func:`~app.engine.sampling.run_mc`.

    Args:
        net: A network or an :class:`~app.engine.ensemble.EnsembleNet` (eval mode).
        x: ``(B, 3, H, W)`` input, ``H`` and ``W`` multiples of ``net.stride``.
        options: Samples per pass, seed, temperature, tta, chunking, strategy, error groups, cancellation, prefix runner.
        mean: Normalisation mean (photometric jitter works on pixel values); needed for ``tta="photometric"`` only.
        std: Normalisation std, likewise.

    Returns:
        Maps of shape ``(B, H, W)`` (probabilities ``(B, C, H, W)``), ``samples`` = the draws averaged.

    Raises:
        RuntimeError: a module of ``net`` is in train mode.
        ValueError: a ``prefix_runner`` with several passes (it stands for one network's prefix of the unaugmented
            input), or photometric jitter without ``mean`` and ``std``.
    """
    if any(module.training for module in net.modules()):
        raise RuntimeError("the engine needs the network in eval mode (only dropout is sampled); call net.eval() first")
    members = members_of(net)
    plan = PassPlan(len(members), options.tta, tta_plan(options.tta, options.seed), options.samples)
    if options.prefix_runner is not None and plan.passes > 1:
        raise ValueError(
            f"prefix_runner runs one network's prefix of the unaugmented input, but this analysis runs {plan.passes} passes ({plan.method}); "
            "pass prefix_runner=None to let every pass run its own prefix"
        )
    if (mean is None or std is None) and any(a.jitter is not None for a in plan.augmentations):
        raise ValueError("photometric test-time augmentation needs the normalisation mean and std")
    jobs = [(member, aug, choose_sampler(member, aug, options)) for member in members for aug in plan.augmentations]
    pool = PassPool(plan.passes, options.samples, options.error_groups if plan.random else 0, options.temperature)
    distance: torch.Tensor | None = None
    pass_done = progress_steps(options.cancel, len(jobs), "pass")
    with torch.inference_mode():
        for index, (member, aug, sampler) in enumerate(jobs):
            if index:
                checkpoint(options.cancel)
            xa = augment(aug, x, mean or (), std or (), member.stride)
            cached = (options.prefix_runner or member.prefix)(xa) if sampler.uses_prefix else None
            checkpoint(options.cancel)
            if index == 0 and options.density is not None:
                distance = density_map(member, cached, xa, options.density)
            sampler.draw(PassJob(index, member, aug, xa, cached, pass_seed(options.seed, index)), pool)
            del cached, xa  # the statistics are all that finalising needs: free the prefix's cache before it peaks
            pass_done()
        return replace(pool.result(), feature_distance=distance)
