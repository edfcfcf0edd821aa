"""The result of analysing one image: every map, cropped to the input's size, as host arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.maps.regions import Region
from app.metrics.conformal import ImageCheck
from app.metrics.image_ood import ImageOodResult

__all__ = ["Analysis"]


@dataclass
class Analysis:
    """Everything one analysis produced, cropped to the input's size.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB input after decoding.
        prediction: ``(H, W)`` int64 labels.
        maps: Name → ``(H, W)`` float32 map, one per entry of :data:`app.maps.registry.MAPS`.
        mean_probs: ``(C, H, W)`` float32 MC mean probabilities (deterministic if ``samples == 0``).
        probs: ``(C, H, W)`` float32 deterministic softmax.
        class_variance: ``(C, H, W)`` float32 per-class MC variance.
        ranges: Name → fixed ``(lo, hi)`` of each map.
        regions: The region table.
        samples: MC samples ``T``.
        seed: Seed of the dropout masks.
        temperature: ``τ`` applied to the logits.
        calibrated: Whether the bundle's fitted ``τ`` was asked for.
        device: Where it ran.
        dropout_added_at_inference: The model was not trained with its dropout.
        timings: Seconds for ``decode``, ``inference``, ``regions``.
        input_size: ``(H, W)`` of the decoded input; the maps are ``analysed_size``.
        resolution: ``"working"`` (resized to the card's working size) or ``"full"`` (every input pixel).
        image_ood: Per detection map, the image-level verdict against the card's reference (empty without one, and with
            test-time augmentation, whose maps the reference was not fitted on).
        mean_errors: Map name → MC standard error of its image mean (:func:`app.maps.mc_error.mean_errors`).
        error_method: How ``mean_errors`` were found: ``"jackknife"`` (leave-one-group-out replicates),
            ``"tile_bound"`` (tiled analysis: the largest tile's jackknife error, an upper bound), ``"exact"``
            (nothing is random: ``T = 0`` without photometric jitter) or ``"unavailable"`` (``T = 1``).
        tta: Test-time augmentation mode (:data:`app.engine.augment.TTA_MODES`).
        passes: Ensemble members × augmentations run, ``samples`` MC samples each (:mod:`app.engine.passes`).
        method: What the statistics pool, e.g. ``"mc_dropout"``, ``"tta:flips"``, ``"ensemble(3) + mc_dropout"``,
            ``"deterministic"`` (:attr:`app.engine.passes.PassPlan.method`).
        unavailable: Maps the bundle cannot compute, present as zeros: ``feature_distance`` when the bundle has no
            fitted feature density (``seg-uncertainty fit-density``). Evaluations and image-level verdicts skip them.
        estimator: How the sampled maps were estimated: ``"sampled"`` (plug-in statistics of the samples) or
            ``"rao_blackwellised"`` (each pixel's ``enumerated_channels`` widest channels summed exactly in every draw,
            bias-corrected; :mod:`app.maps.rao_blackwell`).
        enumerated_channels: ``k`` of the Rao–Blackwellised estimator (0 for ``"sampled"``).
        effort: Softmax evaluations per pixel and pass: ``samples × 2^k`` (``samples`` for ``"sampled"``).
        image_check: The one image-level verdict (:mod:`app.metrics.conformal`): unusual, not flagged or not checked,
            with its p-value and reference; ``image_ood`` holds the per-map percentiles behind it.
    """

    image: np.ndarray
    prediction: np.ndarray
    maps: dict[str, np.ndarray]
    mean_probs: np.ndarray
    probs: np.ndarray
    class_variance: np.ndarray
    ranges: dict[str, tuple[float, float]]
    regions: list[Region]
    samples: int
    seed: int
    temperature: float
    calibrated: bool
    device: str
    dropout_added_at_inference: bool
    timings: dict[str, float] = field(default_factory=dict)
    input_size: tuple[int, int] | None = None
    resolution: str = "full"
    image_ood: list[ImageOodResult] = field(default_factory=list)
    mean_errors: dict[str, float | None] = field(default_factory=dict)
    error_method: str = "unavailable"
    tta: str = "none"
    passes: int = 1
    method: str = "mc_dropout"
    unavailable: tuple[str, ...] = ()
    image_check: ImageCheck | None = None
    estimator: str = "sampled"
    enumerated_channels: int = 0
    effort: int = 0

    @property
    def analysed_size(self) -> tuple[int, int]:
        """``(H, W)`` of the maps."""
        return self.height, self.width

    @property
    def height(self) -> int:
        """Rows of the input."""
        return int(self.prediction.shape[0])

    @property
    def width(self) -> int:
        """Columns of the input."""
        return int(self.prediction.shape[1])

    @property
    def num_classes(self) -> int:
        """``C``."""
        return int(self.probs.shape[0])
