"""The one value an analysis is asked with: it travels unchanged from a route or a command to the engine."""

from __future__ import annotations

from dataclasses import dataclass, replace

from app.defaults import (
    DEFAULT_RESOLUTION,
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    DEFAULT_TTA,
    MAX_SEED,
    MIN_AREA,
    RESOLUTIONS,
    TTA_MODES,
    Resolution,
    TtaMode,
)

__all__ = ["AnalysisRequest"]


@dataclass(frozen=True)
class AnalysisRequest:
    """What one analysis is asked to do.

    Attributes:
        samples: MC samples ``T`` (0: the deterministic pass only).
        seed: Seed of the dropout masks (and of photometric TTA's jitter).
        calibrated: Apply the bundle's fitted temperature (``τ = 1`` otherwise).
        resolution: ``"working"`` (the card's working size) or ``"full"`` (every input pixel).
        tta: Test-time augmentation (:data:`app.defaults.TTA_MODES`).
        min_area: Smallest connected component listed in the region table.
        chunk_size: Samples per batched pass (``None``: from the memory budget).
        class_arrays: Keep the ``(C, H, W)`` float32 arrays ``probs``, ``mean_probs`` and ``class_variance`` in the
            analysis (:class:`~app.engine.analysis.ClassArrays`). ``False``: the maps and labels only, which every map, PNG
            and the region table are made of; a full-resolution analysis then holds ``12·C`` bytes a pixel fewer
            (``analyze`` keeps them only when ``--save`` names one).

    Raises:
        ValueError: a value out of its range (raised on construction).
    """

    samples: int = DEFAULT_SAMPLES
    seed: int = DEFAULT_SEED
    calibrated: bool = False
    resolution: Resolution = DEFAULT_RESOLUTION
    tta: TtaMode = DEFAULT_TTA
    min_area: int = MIN_AREA
    chunk_size: int | None = None
    class_arrays: bool = True

    def __post_init__(self) -> None:
        if self.samples < 0:
            raise ValueError(f"samples must be >= 0, got {self.samples}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {self.resolution!r}")
        if self.tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {TTA_MODES}, got {self.tta!r}")
        if self.min_area < 1:
            raise ValueError(f"min_area must be >= 1, got {self.min_area}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {self.chunk_size}")

    def with_samples(self, samples: int) -> AnalysisRequest:
        """This request with ``samples`` MC samples."""
        return replace(self, samples=samples)
