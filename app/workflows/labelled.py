"""Analyse an image against its ground-truth mask: the one labelled-analysis path of the CLI, the API and training."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from app.engine.analysis import Analysis
from app.engine.cancel import CancelToken
from app.error_codes import ErrorCode
from app.io.masks import MaskError, check_mask_size, decode_mask
from app.io.resize import resize_labels
from app.request import AnalysisRequest
from app.workflows.analyzer import DEFAULT_REQUEST, Analyzer

__all__ = ["LabelledAnalysis", "analyze_labelled"]


@dataclass
class LabelledAnalysis:
    """An analysis and the ``(H, W)`` int64 mask it is scored against, both at the analysed size."""

    analysis: Analysis
    mask: np.ndarray


def analyze_labelled(
    analyzer: Analyzer,
    image: bytes | np.ndarray,
    mask: bytes | np.ndarray,
    request: AnalysisRequest = DEFAULT_REQUEST,
    *,
    mask_name: str = "mask",
    cancel: CancelToken | None = None,
) -> LabelledAnalysis:
    """Decode an image and its mask, check that they pair up, then analyse the image.

    The mask is checked against the input's size before inference, so a bad mask costs no model
    time. When the image is analysed at a smaller working size, the mask is resized with it (nearest
    neighbour), so metrics are computed at the analysed size.

    Args:
        analyzer: The analyser of the model.
        image: Encoded image bytes, or ``(H, W, 3)`` uint8 RGB.
        mask: Encoded single-channel mask bytes, or ``(H, W)`` class indices.
        request: What the analysis is asked to do, as in :meth:`~app.workflows.analyzer.Analyzer.analyze_image`.
        mask_name: How the mask's error messages start (the upload's or file's name).
        cancel: Stops the analysis at its next cancellation point once cancelled (see :mod:`app.engine.cancel`).

    Raises:
        app.io.decoding.ImageDecodeError: the image is not usable.
        app.io.masks.MaskError: the mask is not an image, not single-channel, or of another size.
        app.engine.cancel.AnalysisCancelled: ``cancel`` was cancelled.
    """
    start = time.perf_counter()
    rgb, size = analyzer.decode_for(image, request, cancel=cancel) if isinstance(image, bytes) else (image, (int(image.shape[0]), int(image.shape[1])))
    if isinstance(mask, bytes):
        labels = decode_mask(mask, size, mask_name)
    else:
        if mask.ndim != 2:
            raise MaskError(ErrorCode.MASK_NOT_SINGLE_CHANNEL, f"{mask_name}: mask must be a (H, W) array of class indices, got shape {mask.shape}")
        check_mask_size(int(mask.shape[1]), int(mask.shape[0]), mask_name, size)
        labels = mask.astype(np.int64, copy=False)
    decoded = time.perf_counter() - start
    analysis = analyzer.analyze_image(rgb, request, cancel=cancel, input_size=size)
    analysis.timings["decode"] = decoded
    return LabelledAnalysis(analysis, resize_labels(labels, analysis.analysed_size))
