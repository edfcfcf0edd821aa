"""Compare sources of uncertainty (MC dropout, TTA, a deep ensemble, the feature density) on the same images.

A method is one bundle, one test-time augmentation and one sample count, run through the one analysis path. On each
labelled split every image goes through the :class:`~app.metrics.scoring.Evaluator` (calibration of the mean
prediction, error detection, and OOD-pixel detection on the OOD split), and every image, labelled or not (photos), keeps
each available detection map's image mean and the feature distance's typicality score (its image mean and spread
against the bundle's fit images, :class:`~app.metrics.image_ood.ImageTypicality`). Each image's dropout masks are
seeded by ``image_seed(seed, name)``, as in :func:`~app.workflows.evaluate_folder.evaluate_pairs`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.defaults import DEFAULT_TTA, IGNORE_INDEX, TtaMode
from app.engine.analysis import Analysis
from app.engine.dropout_masks import image_seed
from app.maps.registry import DETECTION_MAPS, get_map
from app.metrics.image_ood import ImageTypicality, image_auroc
from app.metrics.scoring import EvaluationResult, Evaluator
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.evaluate_folder import labelled_pairs

__all__ = ["TYPICALITY", "ImageScores", "Method", "MethodResult", "run_method", "standard_methods"]

TYPICALITY = "feature_distance typicality"
"""The image-level score name of the feature distance's (mean, spread) typicality, beside the maps' image means."""


@dataclass(frozen=True)
class Method:
    """One way of being uncertain: a bundle (name or folder), a test-time augmentation and MC samples per pass."""

    label: str
    model: str
    tta: TtaMode = DEFAULT_TTA
    samples: int = 0

    def request(self, seed: int) -> AnalysisRequest:
        """The analysis this method asks for, seeded by ``seed``."""
        return AnalysisRequest(samples=self.samples, seed=seed, tta=self.tta)


def standard_methods(samples: int, ensemble: str, model: str = "default") -> list[Method]:
    """One deterministic pass (with the feature density), MC dropout, TTA flips, the ensemble, and their combinations."""
    return [
        Method("one pass + feature density", model),
        Method(f"MC dropout (T={samples})", model, samples=samples),
        Method("TTA flips", model, "flips"),
        Method(f"TTA flips × MC (T={samples})", model, "flips", samples),
        Method("ensemble", ensemble),
        Method(f"ensemble × MC (T={samples})", ensemble, samples=samples),
        Method(f"ensemble × flips × MC (T={samples})", ensemble, "flips", samples),
    ]


@dataclass
class ImageScores:
    """Image-level scores of one set of images, in order.

    Attributes:
        names: The images' names.
        means: Detection map → each image's mean of it (maps the bundle cannot compute are absent).
        typicality: Each image's :data:`TYPICALITY` score; empty when the bundle has no fitted density.
    """

    names: list[str] = field(default_factory=list)
    means: dict[str, list[float]] = field(default_factory=dict)
    typicality: list[float] = field(default_factory=list)

    def add(self, name: str, analysis: Analysis, typicality: ImageTypicality | None) -> None:
        """Keep one analysed image's scores."""
        self.names.append(name)
        for m in DETECTION_MAPS:
            if m not in analysis.unavailable:
                self.means.setdefault(m, []).append(float(analysis.maps[m].mean(dtype=np.float64)))
        if typicality is not None and "feature_distance" not in analysis.unavailable:
            values = analysis.maps["feature_distance"]
            self.typicality.append(typicality.score((float(values.mean(dtype=np.float64)), float(values.std(dtype=np.float64)))))

    def scores(self, name: str) -> list[float]:
        """The image-level scores of a map's image mean, or of :data:`TYPICALITY`; empty when unavailable."""
        return self.typicality if name == TYPICALITY else self.means.get(name, [])


@dataclass(frozen=True)
class MethodResult:
    """One method on every set.

    Attributes:
        method: What was asked for.
        reported: What the analyses report they pooled (:attr:`app.engine.analysis.Analysis.method`).
        pixels: Labelled split → its pixel-level evaluation.
        images: Set (labelled splits and unlabelled sets) → its image-level scores.
        seconds_per_image: Mean wall time per labelled image (analysis and scoring).
    """

    method: Method
    reported: str
    pixels: dict[str, EvaluationResult]
    images: dict[str, ImageScores]
    seconds_per_image: float

    def image_auroc(self, inside: str, outside: str, name: str) -> float | None:
        """AUROC of ``name``'s image-level score (a map's image mean or :data:`TYPICALITY`) for ``outside`` vs ``inside``."""
        a, b = self.images[inside].scores(name), self.images[outside].scores(name)
        if not a or not b:
            return None
        return image_auroc(a, b, "high" if name == TYPICALITY else get_map(name).uncertain_when)


def _typicality(analyzer: Analyzer) -> ImageTypicality | None:
    info = analyzer.bundle.card.feature_density
    return ImageTypicality(info.image_statistics) if analyzer.bundle.density is not None and info is not None else None


def run_method(
    analyzer: Analyzer,
    method: Method,
    splits: Mapping[str, Sequence[tuple[Path, Path]]],
    unlabelled: Mapping[str, Sequence[tuple[str, np.ndarray]]],
    *,
    seed: int,
    ood_split: str = "ood",
    ood_label: int = IGNORE_INDEX,
    ignore_index: int | None = IGNORE_INDEX,
) -> MethodResult:
    """Run ``method`` (with ``analyzer``, of its bundle) over labelled ``splits`` and ``unlabelled`` image sets.

    Args:
        analyzer: The analyser of ``method.model``.
        method: The method.
        splits: Split name → ``(image, mask)`` file pairs.
        unlabelled: Set name → ``(name, (H, W, 3) uint8 RGB)`` images, analysed at the working resolution.
        seed: The run seed.
        ood_split: The split whose ``ood_label`` pixels are scored for OOD-pixel detection.
        ood_label: The OOD pixels' label in its masks (may equal ``ignore_index``).
        ignore_index: Mask value never scored as in-distribution.
    """
    card = analyzer.bundle.card
    typicality = _typicality(analyzer)
    reported = ""
    pixels: dict[str, EvaluationResult] = {}
    images: dict[str, ImageScores] = {}
    first = next((pairs[0] for pairs in splits.values() if pairs), None)
    if first is not None:  # warm up (the cost probe, first-call allocations) outside the timing
        next(iter(labelled_pairs(analyzer, [first], method.request(seed))))
    count, start = 0, time.perf_counter()
    for split, pairs in splits.items():
        temperature = card.temperature if card.temperature != 1.0 else None
        evaluator = Evaluator(len(card.classes), ignore_index, ood_label if split == ood_split else None, temperature)
        scores = images[split] = ImageScores()
        for image, labelled in labelled_pairs(analyzer, pairs, method.request(seed)):
            evaluator.add(labelled.analysis, labelled.mask)
            scores.add(image.name, labelled.analysis, typicality)
            reported = labelled.analysis.method
            count += 1
        pixels[split] = evaluator.result(analyzer.bundle.class_names)
    seconds = (time.perf_counter() - start) / max(count, 1)
    for name, photos in unlabelled.items():
        scores = images[name] = ImageScores()
        for photo, rgb in photos:
            analysis = analyzer.analyze_image(rgb, method.request(image_seed(seed, photo)))
            scores.add(photo, analysis, typicality)
            reported = reported or analysis.method
    return MethodResult(method, reported, pixels, images, seconds)
