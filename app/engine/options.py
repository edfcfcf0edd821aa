"""How an analysis draws its MC samples: the one options value the engine takes (:class:`SamplingOptions`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from app.defaults import (
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    DEFAULT_TTA,
    ENUMERATED_CHANNELS,
    ESTIMATORS,
    JACKKNIFE_ORDER,
    MC_GROUPS,
    MEMORY_BUDGET,
    TTA_MODES,
    Estimator,
    TtaMode,
)
from app.engine.cancel import CancelToken
from app.maps.density import FeatureDensity

__all__ = ["STRATEGIES", "SamplingOptions"]

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
        factorise: With ``"cached"``, use the factorised or tiled head (:mod:`app.engine.samplers`) when the
            model allows it and its buffers fit ``memory_budget``.
        error_groups: Jackknife groups of the MC standard errors (:mod:`app.maps.mc_error`); 0 or 1 skips them
            (no replicates, ``G`` times less statistics memory).
        cancel: Checked after every deterministic prefix, between passes and before every chunk of samples (and every
            row tile of the tiled head); a cancelled token stops the analysis with
            :class:`~app.engine.cancel.AnalysisCancelled`.
        prefix_runner: Runs the deterministic prefix in place of ``net.prefix`` and returns what it would
            (e.g. :class:`~app.workflows.batching.PrefixBatcher`, which runs it batched with other requests');
            ``None``: ``net.prefix``. It stands for one network's prefix of the unaugmented input, so it needs the
            ``"cached"`` strategy and an analysis of one pass: :func:`app.engine.passes.run_passes` refuses it
            (``ValueError``) for an ensemble or test-time augmentation rather than ignore it.
        tta: Test-time augmentation mode (:data:`app.defaults.TTA_MODES`), run by
            :func:`app.engine.passes.run_passes`; :func:`~app.engine.sampling.run_mc` runs one unaugmented pass.
        estimator: ``"sampled"`` (the textbook sampler, the reference), ``"rao_blackwellised"`` (a tileable head's
            ``T // 2^k`` draws with ``enumerated`` channels per pixel summed exactly, drawn independently per block of
            pixels and jackknife bias-corrected, :mod:`app.engine.rb_head`; one unaugmented pass of ``T >= 2``, else
            sampled), ``"propagated"`` (the same channels exact, the others to second order, nothing sampled,
            :mod:`app.engine.propagated_head`; one unaugmented pass of ``T >= 1``, else sampled) or ``"auto"`` (as
            ``"rao_blackwellised"`` when that gives three draws or more, else sampled). The maps say which ran
            (``UncertaintyMaps.estimator``).
        enumerated: ``k`` of the Rao–Blackwellised estimator (``2^k`` exact branches per draw; ``T`` head evaluations
            per pixel buy ``T // 2^k`` draws).
        jackknife_order: ``α`` of the Rao–Blackwellised entropy's jackknife (:mod:`app.maps.rb_jackknife`), in ``[1, 3]``.
        replicate_step: The tiled head (one pass) makes its jackknife replicate maps on every ``replicate_step``-th
            row and column only, ``(B, G, ⌈H/s⌉, ⌈W/s⌉)``: a sliding-window analysis takes only their means (the tile
            bound), whole-image analyses keep every pixel's (region errors need them).
        density: A fitted feature density (:mod:`app.maps.density`): the maps get its ``feature_distance``, computed
            from the deterministic pass's decoder output (:func:`app.engine.feature_density.density_map`); ``None``: none.

    Raises:
        ValueError: a field out of range, an unknown strategy or tta, or a ``prefix_runner`` with ``strategy="full"``.
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
    tta: TtaMode = DEFAULT_TTA
    density: FeatureDensity | None = field(default=None, compare=False, repr=False)
    estimator: Estimator = "sampled"
    enumerated: int = ENUMERATED_CHANNELS
    jackknife_order: float = JACKKNIFE_ORDER
    replicate_step: int = 1

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
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if not 0 <= self.enumerated <= 8:
            raise ValueError(f"enumerated must be in [0, 8], got {self.enumerated}")
        if not 1.0 <= self.jackknife_order <= 3.0:
            raise ValueError(f"jackknife_order must be in [1, 3], got {self.jackknife_order}")
        if self.replicate_step < 1:
            raise ValueError(f"replicate_step must be >= 1, got {self.replicate_step}")
        if self.prefix_runner is not None and self.strategy != "cached":
            raise ValueError(f"prefix_runner runs the deterministic prefix, which strategy={self.strategy!r} never runs; use strategy='cached' or drop it")
