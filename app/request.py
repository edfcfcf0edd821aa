"""The one value an analysis is asked with: it travels unchanged from a route or a command to the engine."""

from __future__ import annotations

from dataclasses import dataclass, replace

from app.defaults import (
    ADVERSARIAL_STEPS,
    DEFAULT_RESOLUTION,
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    DEFAULT_TTA,
    MAX_ADVERSARIAL_EPSILONS,
    MAX_ADVERSARIAL_STEPS,
    MAX_SEED,
    MIN_AREA,
    RESOLUTIONS,
    TTA_MODES,
    Resolution,
    TtaMode,
)

__all__ = ["AnalysisRequest", "parse_epsilons"]


def parse_epsilons(text: str) -> tuple[float, ...]:
    """Attack radii from text: comma-separated pixel levels, each optionally written as a fraction of 255, e.g.
    ``"1,2,4,8"`` or ``"2/255, 4/255"``; sorted ascending (repeats dropped). An empty text is ``()``.

    Raises:
        ValueError: a radius that is not a number, or a fraction over another denominator than 255.
    """
    values = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        number, slash, denominator = item.partition("/")
        if slash and denominator.strip() != "255":
            raise ValueError(f"adversarial radius {item!r}: write it in pixel levels (2) or as a fraction of 255 (2/255)")
        try:
            values.add(float(number))
        except ValueError:
            raise ValueError(f"adversarial radius {item!r} is not a number; write pixel levels, e.g. 1,2,4,8 (meaning 1/255 ... 8/255)") from None
    return tuple(sorted(values))


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
        adversarial: Radii of the adversarial-sensitivity attack in pixel levels of ``[0, 255]`` (2 is 2/255), strictly
            ascending; ``()`` (the default): no attack (:mod:`app.engine.adversarial`; it costs backward passes).
        adversarial_steps: PGD steps after the FGSM step at each radius.

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
    adversarial: tuple[float, ...] = ()
    adversarial_steps: int = ADVERSARIAL_STEPS

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
        if len(self.adversarial) > MAX_ADVERSARIAL_EPSILONS:
            raise ValueError(f"adversarial: at most {MAX_ADVERSARIAL_EPSILONS} radii, got {len(self.adversarial)}")
        if any(not 0 < e <= 255 for e in self.adversarial):
            raise ValueError(f"adversarial: every radius must be in (0, 255] pixel levels, got {list(self.adversarial)}")
        if any(b <= a for a, b in zip(self.adversarial, self.adversarial[1:], strict=False)):
            raise ValueError(f"adversarial: radii must be strictly ascending, got {list(self.adversarial)}")
        if not 0 <= self.adversarial_steps <= MAX_ADVERSARIAL_STEPS:
            raise ValueError(f"adversarial_steps must be in [0, {MAX_ADVERSARIAL_STEPS}], got {self.adversarial_steps}")

    def with_samples(self, samples: int) -> AnalysisRequest:
        """This request with ``samples`` MC samples."""
        return replace(self, samples=samples)
