"""The evaluation reports: the reliability diagram draws every curve in its own colour, and the Markdown shows the numbers."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from app.defaults import ECE_BINS
from app.io.reports import CURVE_COLOURS, FALLBACK_COLOUR, markdown_report, reliability_png
from app.metrics.calibration import CalibrationResult, Reliability
from app.metrics.scoring import DetectionResult, EvaluationResult, OodResult, SegmentationResult


def _curve(accuracy: float, ece: float) -> CalibrationResult:
    """Every pixel in the top bin, with the given accuracy."""
    edges = np.linspace(0, 1, ECE_BINS + 1)
    count = [0] * (ECE_BINS - 1) + [100]
    return CalibrationResult(
        ece=ece,
        mce=ece,
        nll=0.5,
        brier=0.25,
        accuracy=accuracy,
        pixels=100,
        bins=ECE_BINS,
        binning="top-label",
        reliability=Reliability(
            lower=[float(v) for v in edges[:-1]],
            upper=[float(v) for v in edges[1:]],
            count=count,
            accuracy=[None] * (ECE_BINS - 1) + [accuracy],
            confidence=[None] * (ECE_BINS - 1) + [0.98],
        ),
    )


def _colours(png: bytes) -> set[tuple[int, int, int]]:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    return {(int(r), int(g), int(b)) for r, g, b in np.unique(pixels, axis=0)}


def test_every_evaluator_curve_has_its_own_colour() -> None:
    """softmax, softmax_scaled and mc_mean (the evaluator's names) are drawn in their colours, none in the fallback grey."""
    curves = {"softmax": _curve(0.9, 0.08), "softmax_scaled": _curve(0.95, 0.03), "mc_mean": _curve(0.92, 0.06)}
    png = reliability_png(curves)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    swatches = [tuple(int(v) for v in img[48 + 420 + 40 + 18 * i + 6, 48 + 6]) for i in range(len(curves))]
    assert swatches == [CURVE_COLOURS[name] for name in curves]
    assert FALLBACK_COLOUR not in swatches
    assert all(CURVE_COLOURS[name] in _colours(png) for name in curves)


def test_bar_height_is_the_bin_accuracy() -> None:
    """The one bar's top sits at the bin's accuracy on the y axis (plot area 420 px from y = 48)."""
    img = np.asarray(Image.open(io.BytesIO(reliability_png({"softmax": _curve(0.5, 0.48)}))).convert("RGB"))
    column = img[:, 48 + 420 - 5]
    red_rows = np.nonzero((column == CURVE_COLOURS["softmax"]).all(axis=1))[0]
    assert red_rows.min() == 48 + 420 - 210
    assert red_rows.max() == 48 + 420


def test_markdown_report_lists_the_numbers() -> None:
    result = EvaluationResult(
        images=2,
        segmentation=SegmentationResult(miou=0.75, pixel_accuracy=0.9, pixels=1000, iou_per_class={"bg": 0.8, "car": None}),
        calibration={"softmax": _curve(0.9, 0.0812)},
        error_detection={"confidence": DetectionResult(auroc=0.91, aurc=0.012)},
        ood_detection={"confidence": OodResult(auroc=0.66)},
        ood_label=255,
        ignore_index=255,
    )
    text = markdown_report(result)
    assert "# Evaluation (2 images, 1000 labelled pixels)" in text
    assert "mIoU **0.7500**, pixel accuracy **0.9000**" in text
    assert "| car | – |" in text
    assert "| softmax | 0.0812 |" in text
    assert "| confidence | 0.9100 | 0.0120 | 0.6600 |" in text
    assert f"{ECE_BINS} equal-width bins" in text
