"""Evaluate a model on a folder of images and masks, and write the report files.

Each image's dropout masks are seeded by :func:`~app.engine.dropout_masks.image_seed` of the run seed and the image's file
name: the same run seed gives the same metrics, and because every image gets its own masks the MC error of the
metrics averages out over the data set (one seed for all images would repeat the same ``T`` masks everywhere).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from app.defaults import IGNORE_INDEX
from app.engine.dropout_masks import image_seed
from app.io.decoding import ImageDecodeError
from app.io.masks import DatasetError
from app.io.reports import markdown_report, reliability_png
from app.metrics.scoring import EvaluationResult, Evaluator
from app.request import AnalysisRequest
from app.workflows.analyzer import DEFAULT_REQUEST, Analyzer
from app.workflows.labelled import analyze_labelled
from app.workflows.set_calibration import SetCoverage

__all__ = ["FolderEvaluation", "coverage_report", "evaluate_pairs", "labelled_pairs", "write_evaluation"]

Progress = Callable[[Sequence[tuple[Path, Path]]], Iterable[tuple[Path, Path]]]


@dataclass(frozen=True)
class FolderEvaluation:
    """An evaluation and how it was run.

    Attributes:
        seed: The run seed.
        image_seeds: File name → the dropout seed its image was analysed with (``image_seed(seed, name)``); the
            same analysis is ``analyze --seed`` that value.
        method: What the analyses pooled (:attr:`app.engine.analysis.Analysis.method`).
        conformal: Per calibrated level of the card's prediction sets, how they covered these images
            (:class:`~app.workflows.set_calibration.SetCoverage`); ``None`` when the model has no sets.
    """

    metrics: EvaluationResult
    model: str
    samples: int
    seed: int
    temperature: float
    seconds: float
    image_seeds: dict[str, int] = field(default_factory=dict)
    method: str = ""
    conformal: dict[str, dict[str, float]] | None = None

    def to_json(self) -> dict[str, Any]:
        """``metrics.json``: the metrics with the run's settings."""
        return {
            **asdict(self.metrics),
            "model": self.model,
            "samples": self.samples,
            "method": self.method,
            "seed": self.seed,
            "seeding": "per image: image_seed(seed, image file name), listed in image_seeds",
            "image_seeds": self.image_seeds,
            "temperature": self.temperature,
            "seconds": self.seconds,
            "conformal": self.conformal,
        }


def labelled_pairs(analyzer: Analyzer, pairs: Sequence[tuple[Path, Path]], request: AnalysisRequest, progress: Progress = iter) -> Iterable[tuple[Path, Any]]:
    """Analyse each ``(image, mask)`` file pair as ``request`` asks, with its own seed ``image_seed(request.seed, image.name)``.

    A file that cannot be read stops with a :class:`DatasetError` naming it.
    """
    for image, mask in progress(pairs):
        try:
            seeded = replace(request, seed=image_seed(request.seed, image.name))
            yield image, analyze_labelled(analyzer, image.read_bytes(), mask.read_bytes(), seeded, mask_name=mask.name)
        except ImageDecodeError as exc:
            raise DatasetError(f"{image.name}: {exc.message}") from exc


def evaluate_pairs(
    analyzer: Analyzer,
    pairs: Sequence[tuple[Path, Path]],
    request: AnalysisRequest = DEFAULT_REQUEST,
    *,
    ignore_index: int | None = IGNORE_INDEX,
    ood_label: int | None = None,
    progress: Progress = iter,
) -> FolderEvaluation:
    """Stream every pair through the :class:`~app.metrics.scoring.Evaluator`.

    The softmax at the bundle's fitted temperature is scored too when the bundle has one. ``request.seed`` is the run
    seed; each image's masks are seeded by ``image_seed(request.seed, image file name)``. An ensemble bundle pools its
    members.

    Raises:
        DatasetError: an image or mask cannot be read or does not match.
        ValueError: ``ood_label`` is one of the model's classes (:func:`~app.metrics.scoring.check_ood_label`; the API
            refuses it with the same message).
    """
    card = analyzer.bundle.card
    evaluator = Evaluator(len(card.classes), ignore_index, ood_label, card.temperature if card.temperature != 1.0 else None)
    started = time.perf_counter()
    method = ""
    coverage = SetCoverage(len(card.classes), ignore_index)
    for _image, labelled in labelled_pairs(analyzer, pairs, request, progress):
        evaluator.add(labelled.analysis, labelled.mask)
        coverage.add(labelled.analysis, labelled.mask)
        method = labelled.analysis.method
    return FolderEvaluation(
        metrics=evaluator.result(analyzer.bundle.class_names),
        model=card.name,
        samples=request.samples,
        seed=request.seed,
        temperature=card.temperature,
        seconds=round(time.perf_counter() - started, 2),
        image_seeds={image.name: image_seed(request.seed, image.name) for image, _mask in pairs},
        method=method,
        conformal=coverage.result(),
    )


def write_evaluation(evaluation: FolderEvaluation, out: Path) -> str:
    """Write ``metrics.json``, ``report.md`` and ``reliability.png`` into ``out``; returns the Markdown report."""
    out.mkdir(parents=True, exist_ok=True)
    report = markdown_report(evaluation.metrics) + coverage_report(evaluation.conformal)
    (out / "metrics.json").write_text(json.dumps(evaluation.to_json(), indent=2))
    (out / "report.md").write_text(report)
    (out / "reliability.png").write_bytes(reliability_png(evaluation.metrics.calibration))
    return report


def coverage_report(conformal: dict[str, dict[str, float]] | None) -> str:
    """The report's section on the prediction sets' coverage of these images (empty without sets)."""
    if not conformal:
        return ""
    lines = [
        "",
        "## Conformal prediction sets on these images",
        "",
        "Share of scored pixels whose true class is outside their set (mean over images ± standard error); the card bounds its "
        "expectation by alpha for images like its calibration images, and on other images it may not hold.",
        "",
        "| alpha | threshold | miss share | mean set size | images |",
        "|---|---|---|---|---|",
    ]
    for level in conformal.values():
        lines.append(
            f"| {level['alpha']:g} | {level['threshold']:.4f} | {level['miss_share']:.4f} ± {level['standard_error']:.4f} | "
            f"{level['mean_set_size']:.3f} | {int(level['images'])} |"
        )
    return "\n".join(lines) + "\n"
