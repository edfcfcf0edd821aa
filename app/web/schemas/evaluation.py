"""Pydantic models of ``POST /api/v1/evaluate``'s JSON: the analysis plus metrics against a mask."""

from __future__ import annotations

from pydantic import Field

from app.defaults import ECE_BINS
from app.maps.registry import DETECTION_MAPS
from app.web.schemas.analysis import AnalyzeResponse, RawArray
from app.web.schemas.base import ApiModel


class SegmentationMetrics(ApiModel):
    """Quality of the prediction on the labelled pixels."""

    miou: float | None = Field(description="Mean IoU over the classes present in the mask or the prediction; null when no pixel is labelled.")
    pixel_accuracy: float | None = Field(description="Share of labelled pixels predicted correctly; null when no pixel is labelled.")
    iou_per_class: dict[str, float | None] = Field(description="IoU per class name; null for a class absent from both mask and prediction.")
    pixels: int = Field(description="Labelled pixels scored (ignore_index and values outside the model's classes excluded).")


class Reliability(ApiModel):
    """Reliability-diagram data: one entry per confidence bin."""

    lower: list[float] = Field(description="Lower edge of each bin.")
    upper: list[float] = Field(description="Upper edge of each bin.")
    count: list[int] = Field(description="Pixels whose top-label confidence falls in the bin.")
    accuracy: list[float | None] = Field(description="Accuracy of those pixels; null for an empty bin.")
    confidence: list[float | None] = Field(description="Mean top-label confidence of those pixels; null for an empty bin.")


class CalibrationMetrics(ApiModel):
    """Top-label calibration of one set of class probabilities on the labelled pixels."""

    ece: float = Field(description="Expected calibration error: pixel-weighted mean |accuracy - confidence| over the bins, in [0, 1].")
    mce: float = Field(description="Maximum calibration error: the largest |accuracy - confidence| over non-empty bins.")
    nll: float = Field(description="Mean negative log-likelihood of the true class (natural log).")
    brier: float = Field(description="Mean multi-class Brier score.")
    accuracy: float = Field(description="Accuracy of the argmax of these probabilities.")
    pixels: int = Field(description="Pixels scored.")
    bins: int = Field(description="Number of equal-width confidence bins.")
    binning: str = Field(description="How confidences are binned.")
    reliability: Reliability = Field(description="Per-bin data of the reliability diagram.")


class ErrorDetection(ApiModel):
    """How well one map separates wrongly predicted pixels from correct ones."""

    auroc: float | None = Field(
        description="AUROC of the map as an error score (confidence scored as 1 - confidence); null without both correct and wrong pixels."
    )
    aurc: float | None = Field(description="Area under the risk-coverage curve, pixels kept from least to most uncertain (lower is better).")


class OodDetection(ApiModel):
    """How well one map separates OOD-labelled pixels from labelled in-distribution ones."""

    auroc: float | None = Field(description="AUROC of the map as an OOD score; null when the mask has no OOD pixels or no in-distribution ones.")


class EvaluationMetrics(ApiModel):
    """The evaluation of this one image against its mask (app.evaluation.Evaluator)."""

    images: int = Field(description="Images scored (always 1 here).")
    segmentation: SegmentationMetrics = Field(description="mIoU, pixel accuracy and per-class IoU.")
    calibration: dict[str, CalibrationMetrics] = Field(
        description="softmax: deterministic softmax at tau = 1; softmax_scaled: the same at the bundle's fitted tau (only when tau != 1); "
        "mc_mean: the MC-mean probabilities of this analysis (tau applied when calibrated=true)."
    )
    error_detection: dict[str, ErrorDetection] = Field(description=f"Per map ({', '.join(DETECTION_MAPS)}): error-detection scores.")
    ood_detection: dict[str, OodDetection] | None = Field(
        description=f"Per map ({', '.join(DETECTION_MAPS)}): OOD-detection AUROC; null when no ood_label was given."
    )
    ood_label: int | None = Field(description="Mask value marking out-of-distribution pixels, as requested.")
    ignore_index: int | None = Field(description="Mask value that is not scored, as requested.")
    temperature: float = Field(description="The bundle's fitted temperature tau used for softmax_scaled (1.0: never calibrated).")
    notes: str = Field(description="How errors, scores and ECE are defined.")


class ErrorMapOut(ApiModel):
    """Where the prediction disagrees with the mask."""

    description: str = Field(description="What the colours and codes mean.")
    codes_png: str = Field(
        description="The codes (0 correct, 1 wrong, 2 ignored: ignore_index, OOD or not a class of the model) as an 8-bit greyscale data:image/png;base64 URL."
    )
    url: str | None = Field(default=None, description="GET URL of the error map in colour as a PNG; null when the analysis was not kept.")
    png: str | None = Field(
        default=None, description="The error map as a data:image/png;base64 URL (correct dark, wrong red, ignored grey); only with raw=true."
    )
    values: RawArray | None = Field(default=None, description="Raw (H, W) uint8 codes; only with raw=true.")
    correct: int = Field(description="Pixels predicted correctly.")
    wrong: int = Field(description="Labelled pixels predicted wrongly.")
    ignored: int = Field(description="Pixels not scored.")
    out_of_range: int = Field(description="Of the ignored pixels, those whose mask value is neither a class index of the model nor ignore_index nor ood_label.")


class EvaluateResponse(AnalyzeResponse):
    """The analysis of one image (as from /api/v1/analyze) plus its evaluation against a mask."""

    metrics: EvaluationMetrics = Field(description="Segmentation quality, calibration, error and OOD detection on this image.")
    error_map: ErrorMapOut = Field(description="Correct / wrong / ignored pixels as a greyscale PNG of codes (and with raw=true a colour PNG and raw codes).")
    reliability_png: str = Field(description=f"Reliability diagram ({ECE_BINS} equal-width bins with counts) as a data:image/png;base64 URL.")
