"""Shape ``POST /api/v1/evaluate``'s answer: the analysis, its metrics against the mask, the error map and the diagram."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np

from app.engine.analysis import Analysis
from app.io.bundle import ModelCard
from app.io.rendering import ERROR_DESCRIPTION, png_bytes, render_errors
from app.io.reports import reliability_png
from app.metrics.pixels import CORRECT, NOT_SCORED, WRONG, error_codes
from app.metrics.scoring import EvaluationResult, Evaluator
from app.web.encoding import build_response, data_url, raw_array
from app.web.errors import ApiError
from app.web.schemas.evaluation import ErrorMapOut, EvaluateResponse, EvaluationMetrics

__all__ = ["check_labels", "evaluate_json", "evaluate_response"]


def check_labels(num_classes: int, ood_label: int | None) -> None:
    """Refuse an ``ood_label`` that is one of the model's own classes.

    Raises:
        ApiError: 422 naming ``ood_label``.
    """
    if ood_label is not None and ood_label < num_classes:
        raise ApiError(
            422,
            "validation_error",
            f"ood_label: {ood_label} is a class of the model (0 to {num_classes - 1}); use a mask value no class uses, e.g. 255",
            "ood_label",
        )


def error_map(codes: np.ndarray, mask: np.ndarray, num_classes: int, ignore_index: int | None, ood_label: int | None) -> ErrorMapOut:
    """The error map as a PNG data URL, raw codes and counts."""
    special = [v for v in (ignore_index, ood_label) if v is not None]
    out_of_range = ((mask < 0) | (mask >= num_classes)) & ~np.isin(mask, special)
    return ErrorMapOut(
        description=ERROR_DESCRIPTION,
        png=data_url(png_bytes(render_errors(codes))),
        values=raw_array(codes, "uint8"),
        correct=int((codes == CORRECT).sum()),
        wrong=int((codes == WRONG).sum()),
        ignored=int((codes == NOT_SCORED).sum()),
        out_of_range=int(out_of_range.sum()),
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def metrics_model(result: EvaluationResult, temperature: float) -> EvaluationMetrics:
    """The evaluation as the response model (NaN scores of an empty mask become null)."""
    data = asdict(result)
    for key in ("miou", "pixel_accuracy"):
        data["segmentation"][key] = _finite(data["segmentation"][key])
    return EvaluationMetrics.model_validate({**data, "temperature": temperature})


def evaluate_response(
    analysis: Analysis, mask: np.ndarray, card: ModelCard, ignore_index: int | None, ood_label: int | None, started: float
) -> EvaluateResponse:
    """The JSON response of ``POST /api/v1/evaluate``: the analysis, its metrics, error map and reliability diagram."""
    num_classes = len(card.classes)
    evaluator = Evaluator(num_classes, ignore_index, ood_label, card.temperature if card.temperature != 1.0 else None)
    evaluator.add(analysis, mask)
    result = evaluator.result(c.name for c in card.classes)
    codes = error_codes(analysis.prediction, mask, num_classes, ignore_index)
    base = build_response(analysis, card, raw=True, started=started)
    return EvaluateResponse(
        **dict(base),
        metrics=metrics_model(result, card.temperature),
        error_map=error_map(codes, mask, num_classes, ignore_index, ood_label),
        reliability_png=data_url(reliability_png(result.calibration)),
    )


def evaluate_json(analysis: Analysis, mask: np.ndarray, card: ModelCard, ignore_index: int | None, ood_label: int | None, started: float) -> bytes:
    """:func:`evaluate_response` serialised to JSON bytes."""
    return evaluate_response(analysis, mask, card, ignore_index, ood_label, started).model_dump_json().encode()
