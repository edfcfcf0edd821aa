"""The result of analysing one image: every map, cropped to the input's size, as host arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.maps.regions import Region
from app.metrics.conformal import ImageCheck
from app.metrics.image_ood import ImageOodResult

__all__ = ["AdversarialMaps", "Analysis", "ClassArrays", "ClassArraysNotKept", "PredictionSets", "StoredMaps"]


class ClassArraysNotKept(LookupError):
    """An analysis run without its ``(C, H, W)`` arrays (``AnalysisRequest(class_arrays=False)``) was asked for one."""


@dataclass(frozen=True)
class ClassArrays:
    """The ``(C, H, W)`` float32 arrays of an analysis, cropped to the input's size.

    Attributes:
        probs: Deterministic softmax.
        mean_probs: MC mean probabilities (``probs`` itself if ``samples == 0``).
        class_variance: Per-class MC variance.
    """

    probs: np.ndarray
    mean_probs: np.ndarray
    class_variance: np.ndarray


@dataclass(frozen=True)
class StoredMaps:
    """Where a streamed analysis's full-resolution maps went (:mod:`app.io.zarr_store`), and their image-wide statistics.

    Attributes:
        path: The ``maps.zarr`` store.
        size: ``(H, W)`` of the full-resolution maps.
        factor: How many times smaller the analysis's in-memory maps (the previews) are in each axis.
        means: Map name → image mean at full resolution.
        class_shares: Share of the image predicted as each class, in class order.
        layout: The store's name, dtypes, chunks, codec and the previews' factor (``analysis.json``'s ``zarr``).
    """

    path: Path
    size: tuple[int, int]
    factor: int
    means: dict[str, float]
    class_shares: list[float]
    layout: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PredictionSets:
    """Conformal prediction sets of an analysis at the card's calibrated levels (:mod:`app.metrics.risk_control`).

    Attributes:
        thresholds: ``alpha`` → the calibrated ``t`` of each level (a pixel's set: every class with ``p_c ≥ t``).
        sizes: ``alpha`` → ``(H, W)`` uint8 set sizes (0: no class reaches the level; 1: one class; more: ambiguous).
        default_alpha: The level shown first (0.1 when calibrated).
        guarantee: The guarantee in words, with what it assumes.
        approximate: Why this analysis is not the method the card calibrated (``""``: it is).
        class_masks: ``(class name, alpha, threshold)`` of every calibrated class mask (pixels with ``p_class >= threshold``).
        exact: ``alpha`` → (share of one-class sets, mean set size) counted at full resolution, when ``sizes`` are previews.
    """

    thresholds: dict[float, float]
    sizes: dict[float, np.ndarray]
    default_alpha: float
    guarantee: str
    approximate: str = ""
    class_masks: list[tuple[str, float, float]] = field(default_factory=list)
    exact: dict[float, tuple[float, float]] | None = None

    def summaries(self) -> list[dict[str, float]]:
        """Per level: ``alpha``, ``threshold``, the share of one-class sets and the mean set size over the image (from
        ``exact`` when given: a streamed analysis's ``sizes`` are previews, its shares are counted at full resolution)."""
        out = []
        for alpha, sizes in self.sizes.items():
            if self.exact is not None:
                singletons, mean_size = self.exact[alpha]
            else:
                singletons = float(np.count_nonzero(sizes == 1) / max(sizes.size, 1))
                mean_size = float(sizes.mean(dtype=np.float64)) if sizes.size else 0.0
            out.append({"alpha": alpha, "threshold": self.thresholds[alpha], "singleton_share": singletons, "mean_set_size": mean_size})
        return out


@dataclass(frozen=True)
class AdversarialMaps:
    """What the adversarial-sensitivity attack (:mod:`app.engine.adversarial`) found for one image, at its analysed size.

    Flips are counted against ``clean``, the deterministic pass's prediction (dropout off), which the attack targets; it
    can differ from the analysis's ``prediction`` (the MC mean's) where the samples disagree.

    Attributes:
        epsilons: The radii, in pixel levels of ``[0, 255]`` (2 is 2/255).
        steps: PGD steps after the FGSM step at each radius.
        seed: Seed of the random start.
        clean: ``(H, W)`` int64 deterministic prediction of the clean image.
        flip_epsilon: ``(H, W)`` float32: the smallest radius at which some step of the attack changed the pixel's class;
            ``inf`` where none did (the flip-ε map; its share at or below ε never falls as ε grows).
        flip_share: Per radius, the share of pixels the attack's kept perturbed image (unrounded) flips.
        flippable_share: Per radius, the share of pixels with ``flip_epsilon ≤ ε``.
        perturbed: ``(E, H, W, 3)`` uint8: the kept perturbed image at each radius, rounded to 8 bits.
        predictions: ``(E, H, W)`` int64 deterministic predictions of ``perturbed`` (the rounded images).
        rounded_flip_share: Per radius, the share of pixels ``predictions`` flips (the 8-bit image a user could save).
        seconds: Time the attack took.
        passes: Forward passes it ran (``len(epsilons) × (steps + 1)`` of them with a backward pass).
    """

    epsilons: tuple[float, ...]
    steps: int
    seed: int
    clean: np.ndarray
    flip_epsilon: np.ndarray
    flip_share: list[float]
    flippable_share: list[float]
    perturbed: np.ndarray
    predictions: np.ndarray
    rounded_flip_share: list[float]
    seconds: float
    passes: int

    def summary(self) -> dict[str, Any]:
        """``analysis.json``'s ``adversarial``: settings and, per radius, its shares."""
        return {
            "epsilons": list(self.epsilons),
            "steps": self.steps,
            "seed": self.seed,
            "passes": self.passes,
            "seconds": round(self.seconds, 6),
            "levels": [
                {
                    "epsilon": eps,
                    "epsilon_text": f"{eps:g}/255",
                    "flip_share": self.flip_share[k],
                    "flippable_share": self.flippable_share[k],
                    "rounded_flip_share": self.rounded_flip_share[k],
                }
                for k, eps in enumerate(self.epsilons)
            ],
            "never_flipped_share": float(np.isinf(self.flip_epsilon).mean()),
        }


@dataclass
class Analysis:
    """Everything one analysis produced, cropped to the input's size.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB input after decoding.
        prediction: ``(H, W)`` int64 labels.
        maps: Name → ``(H, W)`` float32 map, one per entry of :data:`app.maps.registry.MAPS`.
        class_arrays: The ``(C, H, W)`` arrays (:attr:`probs`, :attr:`mean_probs`, :attr:`class_variance`), or ``None``
            when the request did not keep them (``class_arrays=False``: they would be ``12·C`` bytes a pixel).
        num_classes: ``C``.
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
        effort: Softmax evaluations per pixel and pass: ``(T // 2^k) × 2^k`` for the Rao–Blackwellised estimator, ``T`` for ``"sampled"``.
        image_check: The one image-level verdict (:mod:`app.metrics.conformal`): unusual, not flagged or not checked,
            with its p-value and reference; ``image_ood`` holds the per-map percentiles behind it.
        sets: The conformal prediction sets at the card's calibrated levels, with their guarantee; ``None`` when the card has
            none or the analysis kept no mean probabilities (a tiled analysis without its class arrays).
        stored: For an analysis streamed to a store (:mod:`app.workflows.stream_analysis`): where the full-resolution maps
            are and their statistics; ``image``, ``prediction`` and ``maps`` are then its previews, ``stored.factor``
            times smaller, and the region table lists classes only. ``None``: everything is held here.
        adversarial: The adversarial-sensitivity attack's flip-ε map, shares and perturbed images, when the request asked for
            it (``AnalysisRequest.adversarial``); ``None`` otherwise.
    """

    image: np.ndarray
    prediction: np.ndarray
    maps: dict[str, np.ndarray]
    class_arrays: ClassArrays | None
    num_classes: int
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
    stored: StoredMaps | None = None
    sets: PredictionSets | None = None
    adversarial: AdversarialMaps | None = None

    @property
    def analysed_size(self) -> tuple[int, int]:
        """``(H, W)`` of the maps."""
        return self.height, self.width

    @property
    def height(self) -> int:
        """Rows of the analysed image."""
        return self.stored.size[0] if self.stored is not None else int(self.prediction.shape[0])

    @property
    def width(self) -> int:
        """Columns of the analysed image."""
        return self.stored.size[1] if self.stored is not None else int(self.prediction.shape[1])

    def map_mean(self, name: str) -> float:
        """The image mean of map ``name`` at the analysed size (float64 accumulation)."""
        if self.stored is not None:
            return self.stored.means[name]
        return float(self.maps[name].mean(dtype=np.float64))

    def class_share(self, index: int) -> float:
        """The share of the analysed image predicted as class ``index``."""
        if self.stored is not None:
            return self.stored.class_shares[index]
        return float((self.prediction == index).mean())

    @property
    def probs(self) -> np.ndarray:
        """``(C, H, W)`` float32 deterministic softmax.

        Raises:
            ClassArraysNotKept: the analysis was run with ``class_arrays=False``.
        """
        return self._class_arrays().probs

    @property
    def mean_probs(self) -> np.ndarray:
        """``(C, H, W)`` float32 MC mean probabilities (deterministic if ``samples == 0``).

        Raises:
            ClassArraysNotKept: the analysis was run with ``class_arrays=False``.
        """
        return self._class_arrays().mean_probs

    @property
    def class_variance(self) -> np.ndarray:
        """``(C, H, W)`` float32 per-class MC variance.

        Raises:
            ClassArraysNotKept: the analysis was run with ``class_arrays=False``.
        """
        return self._class_arrays().class_variance

    def _class_arrays(self) -> ClassArrays:
        if self.class_arrays is None:
            raise ClassArraysNotKept(
                "this analysis kept no (C, H, W) arrays; analyse with AnalysisRequest(class_arrays=True) (analyze: --save probs,mean_probs,class_variance)"
            )
        return self.class_arrays
