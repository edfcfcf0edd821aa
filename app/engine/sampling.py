"""The MC-dropout engine's entry point for one network: deterministic prefix once, stochastic tail T times.

:func:`run_mc` is :func:`~app.engine.passes.run_passes` with one pass (one network, no test-time augmentation):
the pass's sampler (:mod:`app.engine.samplers`) is chosen once, samples are processed in chunks whose size bounds
memory, and their statistics stream into grouped sums (:mod:`app.engine.pool`), so peak memory does not grow with
``T``. Masks come from :func:`app.engine.dropout.sampling_plan`, so the result depends on the seed and device only.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from app.engine.ensemble import single_network
from app.engine.network import SegmentationNet
from app.engine.options import STRATEGIES, SamplingOptions
from app.engine.passes import run_passes
from app.engine.samplers import auto_chunk
from app.maps.moments import UncertaintyMaps

__all__ = ["STRATEGIES", "SamplingOptions", "auto_chunk", "run_mc"]


def run_mc(net: SegmentationNet, x: torch.Tensor, options: SamplingOptions) -> UncertaintyMaps:
    """Analyse a padded, normalised batch with MC dropout: one unaugmented pass of one network (``options.tta`` is not run).

    Args:
        net: The network; it stays in eval mode, only its dropout sites are sampled.
        x: ``(B, 3, H, W)`` input, ``H`` and ``W`` multiples of ``net.stride``.
        options: Samples, seed, temperature, chunking, strategy, prefix runner.

    Returns:
        Maps of shape ``(B, H, W)`` (probabilities ``(B, C, H, W)``).

    Raises:
        RuntimeError: ``net`` is an ensemble, or not in eval mode.
    """
    return run_passes(single_network(net), x, replace(options, tta="none"))
