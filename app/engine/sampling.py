"""The MC-dropout engine: deterministic prefix once, stochastic tail T times.

Samples are processed in chunks whose size bounds memory, and their statistics
stream into a :class:`~app.uncertainty.StreamingMoments`, so peak memory does
not grow with ``T``. Masks come from :func:`app.dropout.sampling_plan`, so the
result depends on the seed and device only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from app.defaults import DEFAULT_SAMPLES, DEFAULT_SEED, MC_GROUPS, MEMORY_BUDGET
from app.engine.augment import TTA_MODES
from app.engine.cancel import CancelToken, checkpoint
from app.engine.dropout import SamplingPlan, sampling_plan
from app.engine.factorised_head import FactorisedHead, factorisable
from app.engine.feature_density import density_map
from app.engine.network import SegmentationNet
from app.engine.tiled_head import TiledHeadSampler, tileable
from app.maps.density import FeatureDensity
from app.maps.functions import softmax_entropy
from app.maps.moments import UncertaintyMaps, finalize
from app.maps.replicates import GroupedMoments, finalize_grouped

__all__ = ["SamplingOptions", "auto_chunk", "run_mc", "sample_logit_chunks"]

STRATEGIES = ("cached", "full")


@dataclass(frozen=True)
class SamplingOptions:
    """How to draw the MC samples.

    Attributes:
        samples: ``T``; 0 means the deterministic pass only.
        seed: Seeds every dropout mask.
        temperature: ``τ`` in ``softmax(z / τ)``.
        chunk_size: Samples per batched tail pass; ``None`` picks one from ``memory_budget`` (on a CPU, a tail that is
            not factorised runs one sample at a time: its convolutions already use every core, so batching samples
            buys no speed there and multiplies the tail's memory).
        memory_budget: Bytes a chunk may take when ``chunk_size`` is ``None``.
        strategy: ``"cached"`` (prefix once, tail per sample) or ``"full"`` (one full forward per sample).
        factorise: With ``"cached"``, use :class:`~app.engine.factorised_head.FactorisedHead` when the
            model allows it and its buffers fit ``memory_budget``.
        error_groups: Jackknife groups of the MC standard errors (:mod:`app.maps.mc_error`); 0 or 1 skips them
            (no replicates, ``G`` times less statistics memory).
        cancel: Checked after the deterministic pass and before every chunk of samples (and every row tile
            of the tiled head); a cancelled token stops the analysis with
            :class:`~app.engine.cancel.AnalysisCancelled`.
        prefix_runner: Runs the deterministic prefix in place of ``net.prefix`` and returns what it would
            (e.g. :class:`~app.workflows.batching.PrefixBatcher`, which runs it batched with other requests');
            ``None``: ``net.prefix``.
        tta: Test-time augmentation mode (:data:`app.engine.augment.TTA_MODES`), run by
            :func:`app.engine.passes.run_passes`; :func:`run_mc` itself runs one unaugmented pass.
        density: A fitted feature density (:mod:`app.maps.density`): the maps get its ``feature_distance``, computed
            from the deterministic pass's decoder output (:func:`app.engine.feature_density.density_map`); ``None``: none.
    """

    samples: int = DEFAULT_SAMPLES
    seed: int = DEFAULT_SEED
    temperature: float = 1.0
    chunk_size: int | None = None
    memory_budget: int = MEMORY_BUDGET
    strategy: str = "cached"
    factorise: bool = True
    error_groups: int = MC_GROUPS
    cancel: CancelToken | None = field(default=None, compare=False, repr=False)
    prefix_runner: Callable[[torch.Tensor], Any] | None = field(default=None, compare=False, repr=False)
    tta: str = "none"
    density: FeatureDensity | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.samples < 0:
            raise ValueError(f"samples must be >= 0, got {self.samples}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.error_groups < 0:
            raise ValueError(f"error_groups must be >= 0, got {self.error_groups}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {TTA_MODES}, got {self.tta!r}")


def _nbytes(value: object) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


def auto_chunk(cached_bytes: int, logits_bytes: int, budget: int, samples: int) -> int:
    """Samples per chunk so that one chunk's copies, activations and probabilities fit ``budget``.

    The per-sample cost is estimated as the repeated cached input plus four
    logits-sized buffers (logits, probabilities, squares, entropies); the
    tail's own activations are assumed to be of the order of its input.
    """
    per_sample = 3 * cached_bytes + 4 * logits_bytes
    return max(1, min(samples, budget // max(per_sample, 1)))


def run_mc(net: SegmentationNet, x: torch.Tensor, options: SamplingOptions) -> UncertaintyMaps:
    """Analyse a padded, normalised batch with MC dropout.

    Args:
        net: The network; it stays in eval mode, only its dropout sites are sampled.
        x: ``(B, 3, H, W)`` input, ``H`` and ``W`` multiples of ``net.stride``.
        options: Samples, seed, temperature, chunking and strategy.

    Returns:
        Maps of shape ``(B, H, W)`` (probabilities ``(B, C, H, W)``).
    """
    if any(module.training for module in net.modules()):
        raise RuntimeError("run_mc needs the network in eval mode (only dropout is sampled); call net.eval() first")
    with torch.inference_mode():
        cached_path = options.strategy == "cached"
        cached = (options.prefix_runner or net.prefix)(x) if cached_path else x
        checkpoint(options.cancel)
        distance = density_map(net, cached if cached_path else None, x, options.density) if options.density is not None else None
        if cached_path and options.factorise and options.samples > 0 and tileable(net):
            sampler = TiledHeadSampler(net, cached)
            probs, total, replicates = sampler.run(options.seed, options.samples, options.temperature, options.cancel, options.error_groups)
            return replace(finalize(probs, total), replicates=replicates, feature_distance=distance)
        logits = net.tail(cached, 1) if cached_path else net(x)
        probs = torch.softmax(logits.float() / options.temperature, dim=1)
        if options.samples == 0:
            return replace(finalize(probs, None), feature_distance=distance)
        moments = GroupedMoments(probs, options.samples, options.error_groups)
        for ids, sample_logits in sample_logit_chunks(net, x, cached if cached_path else None, logits, options):
            sample_probs, sample_entropy = softmax_entropy(sample_logits, options.temperature)
            moments.update(sample_probs, ids, sample_entropy)
            del sample_logits
        del cached, logits  # the statistics are all that finalising needs: free the prefix's cache before it peaks
        return replace(finalize_grouped(probs, moments), feature_distance=distance)


def sample_logit_chunks(
    net: SegmentationNet, x: torch.Tensor, cached: Any, logits: torch.Tensor, options: SamplingOptions
) -> Iterator[tuple[range, torch.Tensor]]:
    """The logits of MC samples ``0 … T-1`` in chunks: ``(ids, (len(ids) * B, C, H, W) sample-major logits)``.

    The chunk size and the fast factorised head are chosen as :func:`run_mc` chooses them.

    Args:
        net: The network (eval mode).
        x: The network's input (used when ``cached`` is ``None``: one full forward per sample).
        cached: ``net.prefix(x)`` for the ``"cached"`` strategy, else ``None``.
        logits: The deterministic logits (their size sets the chunk size).
        options: Samples, seed (of the masks), chunking, memory budget and cancellation.
    """
    fast = None
    if cached is not None and options.factorise and factorisable(net) and FactorisedHead.nbytes(cached, logits.shape[1]) <= options.memory_budget:
        fast = FactorisedHead(net, cached)
    if fast is not None:
        chunk = options.chunk_size or auto_chunk(0, _nbytes(logits), options.memory_budget, options.samples)
    elif cached is not None and x.device.type == "cpu":
        chunk = options.chunk_size or 1
    elif cached is not None:
        chunk = options.chunk_size or auto_chunk(_nbytes(cached), _nbytes(logits), options.memory_budget, options.samples)
    else:
        chunk = 1
    for start in range(0, options.samples, chunk):
        checkpoint(options.cancel)
        ids = range(start, min(options.samples, start + chunk))
        if fast is not None:
            sample_logits = fast.logits(SamplingPlan(options.seed, tuple(ids)))
        else:
            with sampling_plan(options.seed, ids):
                sample_logits = net.tail(cached, len(ids)) if cached is not None else net(x)
        yield ids, sample_logits
