"""How one pass draws its MC samples: the sampler plan, chosen once per analysis by :func:`choose_sampler`.

Five ways, each behind the one :class:`Sampler` protocol:

- :class:`RaoBlackwellTail` — ``estimator`` ``"rao_blackwellised"`` or ``"auto"`` on a tileable head: each draw sums
  each pixel's strongest channels exactly (:class:`~app.engine.rb_head.RaoBlackwellHead`); another estimator than the
  samplers below, so its maps differ from theirs by MC error, not by rounding.
- :class:`PropagatedTail` — ``estimator`` ``"propagated"`` on a tileable head: the same channels exact, the others
  propagated to second order, nothing sampled (:class:`~app.engine.propagated_head.PropagatedHead`); biased, noise-free.
- :class:`TiledTail` — channel dropout before a linear stride-1 head on a pass that only permutes pixels: the
  samples are summed row tile by row tile in cache (:class:`~app.engine.tiled_head.TiledHeadSampler`).
- :class:`FactorisedTail` — channel dropout before a linear head: each sample is a mask-weighted sum of per-channel
  head outputs (:class:`~app.engine.factorised_head.FactorisedHead`), when those fit the memory budget.
- :class:`CachedTail` — the deterministic prefix once, the stochastic tail per sample, in chunks.
- :class:`FullPasses` — one full forward per sample (``strategy="full"``, or for checking the others).

For the textbook estimator (``"sampled"``) masks come from :func:`app.engine.dropout.sampling_plan` (or are drawn the
same way), so every other sampler gives the same samples up to float rounding; which one runs changes the cost, never
the maps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.utils._pytree import tree_leaves

from app.engine.augment import Augmentation
from app.engine.cancel import checkpoint, progress_steps
from app.engine.dropout import SamplingPlan, sampling_plan
from app.engine.factorised_head import FactorisedHead, factorisable
from app.engine.network import SegmentationNet
from app.engine.options import SamplingOptions
from app.engine.pool import PassPool
from app.engine.propagated_head import PropagatedHead
from app.engine.rb_head import RaoBlackwellHead, draw_count
from app.engine.tiled_head import TiledHeadSampler, tileable
from app.maps.moments import UncertaintyMaps

__all__ = [
    "CachedTail",
    "FactorisedTail",
    "FullPasses",
    "PassJob",
    "PropagatedTail",
    "RaoBlackwellTail",
    "Sampler",
    "TiledTail",
    "auto_chunk",
    "choose_sampler",
    "nbytes",
]


@dataclass(frozen=True)
class PassJob:
    """One pass of an analysis, ready to sample.

    Attributes:
        index: ``k`` = member · augmentations + augmentation.
        member: The network of the pass (eval mode).
        aug: The pass's augmentation.
        x: ``(B, 3, h, w)`` augmented input.
        cached: ``member.prefix(x)`` (or the options' ``prefix_runner``), ``None`` for a sampler without prefix.
        seed: The pass's mask seed (:func:`~app.engine.passes.pass_seed`).
    """

    index: int
    member: SegmentationNet
    aug: Augmentation
    x: torch.Tensor
    cached: Any
    seed: int


class Sampler(Protocol):
    """Draws one pass's deterministic logits and MC samples into a :class:`~app.engine.pool.PassPool`."""

    @property
    def uses_prefix(self) -> bool:
        """Whether :meth:`draw` samples from the deterministic prefix's output (``job.cached``), else from ``job.x``."""
        ...

    def draw(self, job: PassJob, pool: PassPool) -> None:
        """Add the pass's deterministic logits (when ``pool.needs_deterministic``) and its ``T`` samples to ``pool``."""
        ...


def nbytes(value: Any) -> int:
    """Bytes of every tensor in ``value`` (a tensor, or nested lists, tuples and dicts of them)."""
    return sum(t.numel() * t.element_size() for t in tree_leaves(value) if isinstance(t, torch.Tensor))


def auto_chunk(cached_bytes: int, logits_bytes: int, budget: int, samples: int) -> int:
    """Samples per chunk so that one chunk's copies, activations and probabilities fit ``budget``.

    The per-sample cost is estimated as the repeated cached input plus four
    logits-sized buffers (logits, probabilities, squares, entropies); the
    tail's own activations are assumed to be of the order of its input.
    """
    per_sample = 3 * cached_bytes + 4 * logits_bytes
    return max(1, min(samples, budget // max(per_sample, 1)))


def _deterministic(job: PassJob, pool: PassPool) -> torch.Tensor:
    """The pass's deterministic logits, handed to ``pool`` when it needs them; else an empty ``(B, C, h, w)`` stand-in (for sizes only)."""
    if pool.needs_deterministic:
        logits = job.member.tail(job.cached, 1) if job.cached is not None else job.member(job.x)
        pool.deterministic(job.index, job.aug, logits)
        return logits
    return torch.empty((job.x.shape[0], pool.classes, *job.x.shape[-2:]), device="meta")


@dataclass(frozen=True)
class FullPasses:
    """One full forward per sample, one sample at a time (``strategy="full"``)."""

    options: SamplingOptions
    uses_prefix = False

    def draw(self, job: PassJob, pool: PassPool) -> None:
        """See :meth:`Sampler.draw`."""
        _deterministic(job, pool)

        def full_logits(ids: range) -> torch.Tensor:
            with sampling_plan(job.seed, ids):
                logits: torch.Tensor = job.member(job.x)
            return logits

        _draw_chunks(job, pool, self.options, 1, full_logits)


@dataclass(frozen=True)
class CachedTail:
    """The tail on ``n`` sample-major copies of the cached prefix per chunk (one sample per chunk on a CPU, unless ``chunk_size`` says)."""

    options: SamplingOptions
    uses_prefix = True

    def draw(self, job: PassJob, pool: PassPool) -> None:
        """See :meth:`Sampler.draw`."""
        logits = _deterministic(job, pool)
        if self.options.samples:
            _tail_chunks(job, pool, logits, self.options)


def _tail_chunks(job: PassJob, pool: PassPool, logits: torch.Tensor, options: SamplingOptions) -> None:
    """:class:`CachedTail`'s samples, ``logits`` (the deterministic ones or their stand-in) sizing the chunks."""
    cpu = job.x.device.type == "cpu"
    chunk = options.chunk_size or (1 if cpu else auto_chunk(nbytes(job.cached), nbytes(logits), options.memory_budget, options.samples))

    def tail_logits(ids: range) -> torch.Tensor:
        with sampling_plan(job.seed, ids):
            return job.member.tail(job.cached, len(ids))

    _draw_chunks(job, pool, options, chunk, tail_logits)


def _draw_chunks(job: PassJob, pool: PassPool, options: SamplingOptions, chunk: int, logits_of: Callable[[range], torch.Tensor]) -> None:
    """Samples ``0 .. T-1`` in chunks of ``chunk``: ``logits_of(ids)`` gives a chunk's ``(len(ids), C, H, W)`` logits, pooled at once."""
    chunk_done = progress_steps(options.cancel, -(-options.samples // chunk), "chunk")
    for start in range(0, options.samples, chunk):
        checkpoint(options.cancel)
        ids = range(start, min(options.samples, start + chunk))
        sample_logits = logits_of(ids)
        pool.add_samples(job.aug, ids, sample_logits)
        del sample_logits
        chunk_done()


@dataclass(frozen=True)
class FactorisedTail:
    """Mask-weighted sums of per-channel head outputs; the :class:`CachedTail`'s chunks when those would not fit ``memory_budget``."""

    options: SamplingOptions
    uses_prefix = True

    def draw(self, job: PassJob, pool: PassPool) -> None:
        """See :meth:`Sampler.draw`."""
        logits = _deterministic(job, pool)
        o = self.options
        if o.samples == 0:
            return
        if FactorisedHead.nbytes(job.cached, int(logits.shape[1])) > o.memory_budget:
            _tail_chunks(job, pool, logits, o)
            return
        head = FactorisedHead(job.member, job.cached)
        chunk = o.chunk_size or auto_chunk(0, nbytes(logits), o.memory_budget, o.samples)
        _draw_chunks(job, pool, o, chunk, lambda ids: head.logits(SamplingPlan(job.seed, tuple(ids))))


@dataclass(frozen=True)
class TiledTail:
    """The tiled head (:class:`~app.engine.tiled_head.TiledHeadSampler`): ``T >= 1`` samples summed row tile by row tile."""

    options: SamplingOptions
    uses_prefix = True

    def draw(self, job: PassJob, pool: PassPool) -> None:
        """See :meth:`Sampler.draw`; with one pass the tiled head's softmax is ``p`` (no separate deterministic pass)."""
        o = self.options
        head = TiledHeadSampler(job.member, job.cached)
        if pool.passes == 1:
            pool.adopt(*head.run(job.seed, o.samples, o.temperature, o.cancel, pool.groups, o.replicate_step))
            return
        if pool.needs_deterministic:
            pool.deterministic(job.index, job.aug, job.member.tail(job.cached, 1))
        head.stream(job.seed, o.samples, o.temperature, pool.row_sink(job.aug), o.cancel, pool.groups)


@dataclass(frozen=True)
class RaoBlackwellTail:
    """Rao–Blackwellised draws (:class:`~app.engine.rb_head.RaoBlackwellHead`) for the one pass of an analysis.

    A pass among several (an ensemble member) samples as :class:`TiledTail` does.
    """

    options: SamplingOptions
    uses_prefix = True

    def draw(self, job: PassJob, pool: PassPool) -> None:
        """See :meth:`Sampler.draw`."""
        if pool.passes != 1:
            TiledTail(self.options).draw(job, pool)
            return
        pool.adopt_maps(self.maps(job, pool))

    def maps(self, job: PassJob, pool: PassPool) -> UncertaintyMaps:
        """The one pass's finished maps."""
        o = self.options
        head = RaoBlackwellHead(job.member, job.cached, o.enumerated)
        return head.maps(job.seed, o.samples, o.temperature, o.cancel, pool.groups, o.jackknife_order)


@dataclass(frozen=True)
class PropagatedTail(RaoBlackwellTail):
    """Sampling-free statistics (:class:`~app.engine.propagated_head.PropagatedHead`) for the one pass of an analysis."""

    def maps(self, job: PassJob, pool: PassPool) -> UncertaintyMaps:
        """The one pass's finished maps (nothing sampled)."""
        o = self.options
        return PropagatedHead(job.member, job.cached, o.enumerated).maps(o.samples, o.temperature, o.cancel)


def _draws_enough(options: SamplingOptions) -> bool:
    """Whether the Rao–Blackwellised head may run: ``T >= 2``, and for ``"auto"`` at least three draws (a jackknife)."""
    if options.estimator == "auto":
        return draw_count(options.samples, options.enumerated) >= 3
    return options.samples >= 2


def choose_sampler(member: SegmentationNet, aug: Augmentation, options: SamplingOptions) -> Sampler:
    """The sampler of one pass: the fastest of :class:`TiledTail`, :class:`FactorisedTail`, :class:`CachedTail` that applies, or :class:`FullPasses`.

    Args:
        member: The pass's network.
        aug: The pass's augmentation (the tiled head maps sums back, so it needs one that only permutes pixels).
        options: ``strategy``, ``factorise``, ``estimator`` and ``samples`` choose; the sampler keeps them for chunking.
    """
    if options.strategy == "full":
        return FullPasses(options)
    if options.factorise and options.estimator == "propagated" and options.samples >= 1 and aug.identity and tileable(member):
        return PropagatedTail(options)
    if options.factorise and options.estimator in ("auto", "rao_blackwellised") and _draws_enough(options) and aug.identity and tileable(member):
        return RaoBlackwellTail(options)
    if options.factorise and options.samples > 0 and aug.permutes and tileable(member):
        return TiledTail(options)
    if options.factorise and factorisable(member):
        return FactorisedTail(options)
    return CachedTail(options)
