"""Shape ``POST /api/v1/evaluate``'s answer: the analysis, its metrics against the mask, the error map and the diagram."""

from __future__ import annotations

import math
import time
from dataclasses import asdict

import numpy as np

from app.engine.analysis import Analysis
from app.error_codes import ErrorCode
from app.io.bundle import ModelCard
from app.io.rendering import ERROR_DESCRIPTION, png_bytes, render_errors
from app.io.reports import reliability_png
from app.metrics.pixels import CORRECT, NOT_SCORED, WRONG, error_codes
from app.metrics.scoring import EvaluationResult, Evaluator
from app.web.cache import AnalysisCache
from app.web.encoding import RawDtype, build_response, data_url, keep, map_url, raw_array
from app.web.errors import ApiError
from app.web.png import grey_png
from app.web.schemas.evaluation import ErrorMapOut, EvaluateResponse, EvaluationMetrics

__all__ = ["check_labels", "evaluate_json"]


def check_labels(num_classes: int, ood_label: int | None) -> None:
    """Refuse an ``ood_label`` that is one of the model's own classes.

    Raises:
        ApiError: 422 naming ``ood_label``.
    """
    if ood_label is not None and ood_label < num_classes:
        raise ApiError(
            ErrorCode.VALIDATION_ERROR,
            f"ood_label: {ood_label} is a class of the model (0 to {num_classes - 1}); use a mask value no class uses, e.g. 255",
            "ood_label",
        )


def error_map(
    codes: np.ndarray, mask: np.ndarray, num_classes: int, ignore_index: int | None, ood_label: int | None, analysis_id: str | None, raw: bool
) -> ErrorMapOut:
    """The error map as a greyscale PNG of codes and counts (with ``raw``: a colour PNG and the raw codes too)."""
    special = [v for v in (ignore_index, ood_label) if v is not None]
    out_of_range = ((mask < 0) | (mask >= num_classes)) & ~np.isin(mask, special)
    return ErrorMapOut(
        description=ERROR_DESCRIPTION,
        codes_png=data_url(grey_png(codes.astype(np.uint8))),
        url=map_url(analysis_id, "error"),
        png=data_url(png_bytes(render_errors(codes))) if raw else None,
        values=raw_array(codes, "uint8") if raw else None,
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


def evaluate_json(
    analysis: Analysis,
    mask: np.ndarray,
    card: ModelCard,
    ignore_index: int | None,
    ood_label: int | None,
    started: float,
    cache: AnalysisCache,
    filename: str | None = None,
    raw: bool = False,
    raw_dtype: RawDtype = "float32",
) -> bytes:
    """The JSON of ``POST /api/v1/evaluate``: the analysis (kept in ``cache`` with its error codes), its metrics, error map and reliability diagram."""
    num_classes = len(card.classes)
    evaluator = Evaluator(num_classes, ignore_index, ood_label, card.temperature if card.temperature != 1.0 else None)
    evaluator.add(analysis, mask)
    result = evaluator.result(c.name for c in card.classes)
    codes = error_codes(analysis.prediction, mask, num_classes, ignore_index)
    t0 = time.perf_counter()
    analysis_id = keep(cache, analysis, card, filename, codes)
    base = build_response(analysis, card, analysis_id, cache.ttl, raw, raw_dtype, started, t0)
    response = EvaluateResponse(
        **dict(base),
        metrics=metrics_model(result, card.temperature),
        error_map=error_map(codes, mask, num_classes, ignore_index, ood_label, analysis_id, raw),
        reliability_png=data_url(reliability_png(result.calibration)),
    )
    return response.model_dump_json().encode()
