"""Score one analysis against an uploaded mask: metrics, error map and reliability diagram (``/api/v1/evaluate``)."""

from __future__ import annotations

import dataclasses
import io
import math
import time

import numpy as np
import torch
from PIL import Image

from app.analysis import Analysis, Analyzer
from app.bundle import ModelCard
from app.evaluation import Evaluator, decode_mask
from app.imaging import decode_image
from app.reports import reliability_png
from app.temperature import rescale
from app.web.errors import ApiError
from app.web.payload import build_response, data_url, raw_array
from app.web.schemas_evaluate import ErrorMapOut, EvaluateResponse, EvaluationMetrics

CORRECT, WRONG, IGNORED = 0, 1, 2
ERROR_COLOURS = np.array([[32, 32, 32], [230, 25, 75], [160, 160, 160]], dtype=np.uint8)
ERROR_NAMES = ("correct", "wrong", "not scored")
ERROR_DESCRIPTION = "0 (dark): prediction equals the mask; 1 (red): it differs; 2 (grey): not scored (ignore_index, OOD or not a class of the model)."


def error_legend() -> list[dict[str, str]]:
    """Name and ``#rrggbb`` colour of each error-map code, for the page."""
    return [{"name": name, "colour": "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))} for name, rgb in zip(ERROR_NAMES, ERROR_COLOURS, strict=True)]


def analyze_labelled(
    analyzer: Analyzer, data: bytes, mask_data: bytes, samples: int, seed: int, calibrated: bool, min_area: int, mask_name: str = "mask"
) -> tuple[Analysis, np.ndarray]:
    """Decode an image and its mask, check that they pair up, then analyse the image.

    The mask is checked before inference, so a bad mask costs no model time. ``mask_name``
    (the upload's file name) starts the mask's error messages.

    Raises:
        app.imaging.ImageDecodeError: the image is not usable.
        app.evaluation.MaskError: the mask is not an image, not single-channel, or of another size.
    """
    start = time.perf_counter()
    rgb = decode_image(data, analyzer.max_pixels)
    mask = decode_mask(mask_data, (rgb.shape[0], rgb.shape[1]), mask_name)
    decoded = time.perf_counter() - start
    analysis = analyzer.analyze_image(rgb, samples=samples, seed=seed, calibrated=calibrated, min_area=min_area)
    analysis.timings["decode"] = decoded
    return analysis, mask


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


def scored(mask: np.ndarray, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """Pixels the evaluator scores: a class index of the model other than ``ignore_index``."""
    valid = (mask >= 0) & (mask < num_classes)
    return valid & (mask != ignore_index) if ignore_index is not None else valid


def error_codes(prediction: np.ndarray, mask: np.ndarray, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """``(H, W)`` uint8: 0 correct, 1 wrong, 2 not scored (same pixels as :class:`~app.evaluation.Evaluator`)."""
    wrong = (prediction != mask).astype(np.uint8)
    return np.where(scored(mask, num_classes, ignore_index), wrong, np.uint8(IGNORED)).astype(np.uint8)


def error_map(codes: np.ndarray, mask: np.ndarray, num_classes: int, ignore_index: int | None, ood_label: int | None) -> ErrorMapOut:
    """The error map as a PNG data URL, raw codes and counts."""
    buf = io.BytesIO()
    Image.fromarray(ERROR_COLOURS[codes]).save(buf, format="PNG")
    special = [v for v in (ignore_index, ood_label) if v is not None]
    out_of_range = ((mask < 0) | (mask >= num_classes)) & ~np.isin(mask, special)
    return ErrorMapOut(
        description=ERROR_DESCRIPTION,
        png=data_url(buf.getvalue()),
        values=raw_array(codes, "uint8"),
        correct=int((codes == CORRECT).sum()),
        wrong=int((codes == WRONG).sum()),
        ignored=int((codes == IGNORED).sum()),
        out_of_range=int(out_of_range.sum()),
    )


def at_unit_temperature(analysis: Analysis) -> Analysis:
    """The analysis with its deterministic softmax at τ = 1.

    A calibrated analysis holds ``softmax(z / τ)``; ``softmax(τ · log p)`` gives back ``softmax(z)``
    (softmax ignores the per-pixel shift), so ``softmax`` and ``softmax_scaled`` mean the same with or without ``calibrated``.
    """
    if not analysis.calibrated or analysis.temperature == 1.0:
        return analysis
    probs = rescale(torch.from_numpy(analysis.probs), analysis.temperature, dim=0).numpy()
    return dataclasses.replace(analysis, probs=probs)


def _finite(value: object) -> object:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def evaluation_metrics(analysis: Analysis, mask: np.ndarray, card: ModelCard, ignore_index: int | None, ood_label: int | None) -> dict[str, object]:
    """The :class:`~app.evaluation.Evaluator` result of this one image, plus the τ used for ``softmax_scaled``."""
    tau = card.temperature
    evaluator = Evaluator(len(card.classes), ignore_index, ood_label, tau if tau != 1.0 else None)
    evaluator.add(at_unit_temperature(analysis), mask)
    result = evaluator.result(c.name for c in card.classes)
    segmentation = result["segmentation"]
    assert isinstance(segmentation, dict)
    for key in ("miou", "pixel_accuracy"):
        segmentation[key] = _finite(segmentation[key])
    result["temperature"] = tau
    return result


def evaluate_response(
    analysis: Analysis, mask: np.ndarray, card: ModelCard, ignore_index: int | None, ood_label: int | None, started: float
) -> EvaluateResponse:
    """The JSON response of ``POST /api/v1/evaluate``: the analysis, its metrics, error map and reliability diagram."""
    result = evaluation_metrics(analysis, mask, card, ignore_index, ood_label)
    metrics = EvaluationMetrics.model_validate(result)
    codes = error_codes(analysis.prediction, mask, len(card.classes), ignore_index)
    errors = error_map(codes, mask, len(card.classes), ignore_index, ood_label)
    diagram = data_url(reliability_png(result["calibration"]))  # type: ignore[arg-type]
    base = build_response(analysis, card, raw=True, started=started)
    return EvaluateResponse(**dict(base), metrics=metrics, error_map=errors, reliability_png=diagram)


def evaluate_json(analysis: Analysis, mask: np.ndarray, card: ModelCard, ignore_index: int | None, ood_label: int | None, started: float) -> bytes:
    """:func:`evaluate_response` serialised to JSON bytes."""
    return evaluate_response(analysis, mask, card, ignore_index, ood_label, started).model_dump_json().encode()
