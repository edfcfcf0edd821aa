"""Evaluate a model on labelled images: quality, calibration, error and OOD detection.

Everything streams: per image, the analysis is folded into a confusion matrix,
calibration bins and score histograms, so any number of images fits in memory.
Errors are pixels where the prediction ``argmax p̄`` differs from the label.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from app.analysis import Analysis
from app.calibration import CalibrationStats, DetectionStats
from app.metrics import confusion_matrix, segmentation_scores
from app.temperature import rescale

DETECTION_MAPS = ("confidence", "entropy", "variance", "mutual_information")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
MASK_MODES = ("L", "P", "I", "I;16", "1")


class DatasetError(ValueError):
    """Images and masks that do not pair up."""


def pair_files(images: Path, masks: Path) -> list[tuple[Path, Path]]:
    """Match images to masks by file stem.

    Raises:
        DatasetError: naming every image without a mask (and empty folders).
    """
    from app.cli import IMAGE_SUFFIXES

    if not images.is_dir():
        raise DatasetError(f"image folder {images} does not exist")
    if not masks.is_dir():
        raise DatasetError(f"mask folder {masks} does not exist")
    mask_by_stem = {p.stem: p for p in sorted(masks.iterdir()) if p.suffix.lower() in MASK_SUFFIXES}
    pairs, missing = [], []
    for img in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        if img.stem in mask_by_stem:
            pairs.append((img, mask_by_stem[img.stem]))
        else:
            missing.append(img.name)
    if missing:
        raise DatasetError(f"no mask in {masks} for: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    if not pairs:
        raise DatasetError(f"no images in {images}")
    return pairs


class MaskError(DatasetError):
    """A mask that cannot be scored against its image.

    Attributes:
        code: ``"unsupported_media_type"`` (not an image), ``"corrupt_mask"``,
            ``"mask_not_single_channel"`` or ``"mask_size_mismatch"``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_mask(img: Image.Image, name: str, size: tuple[int, int]) -> None:
    """Check an opened mask's mode and size from its header, before any pixel is decoded.

    Raises:
        MaskError: the mask is not single-channel, or its size is not ``size`` (``(H, W)``).
    """
    if img.mode not in MASK_MODES:
        raise MaskError("mask_not_single_channel", f"{name}: mask must be a single-channel image of class indices, got mode {img.mode}")
    width, height = img.size
    if (height, width) != size:
        raise MaskError("mask_size_mismatch", f"{name}: mask is {width}x{height} but the image is {size[1]}x{size[0]}")


def mask_pixels(img: Image.Image) -> np.ndarray:
    """The class indices of a checked mask as int64 ``(H, W)``."""
    return np.asarray(img, dtype=np.int64)


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A single-channel mask of class indices with the image's ``(H, W)``."""
    with Image.open(path) as img:
        check_mask(img, path.name, size)
        return mask_pixels(img)


def decode_mask(data: bytes, size: tuple[int, int], name: str = "mask") -> np.ndarray:
    """Decode mask bytes (e.g. an uploaded PNG of class indices) with the checks of :func:`read_mask`.

    Args:
        data: The encoded mask.
        size: The image's ``(H, W)``; the mask must match it.
        name: How messages call the mask.

    Raises:
        MaskError: not an image, truncated, not single-channel, or of another size.
    """
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise MaskError("unsupported_media_type", f"{name}: not an image the server can read; send a single-channel PNG of class indices") from exc
    except Image.DecompressionBombError as exc:
        raise MaskError("mask_size_mismatch", f"{name}: the mask has far more pixels than the image ({size[1]}x{size[0]})") from exc
    with img:
        check_mask(img, name, size)
        try:
            return mask_pixels(img)
        except (OSError, SyntaxError, ValueError) as exc:
            raise MaskError("corrupt_mask", f"{name}: the mask file is corrupt or truncated ({exc})") from exc


def detection_score(name: str, values: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, float, float]:
    """An uncertainty score (higher = less trustworthy) and its range for a map."""
    if name == "confidence":
        return 1.0 - values, 1.0 - hi, 1.0 - lo
    return values, lo, hi


@dataclass
class Evaluator:
    """Fold analyses and their masks into all metrics.

    Args:
        num_classes: ``C``.
        ignore_index: Mask value that is not scored.
        ood_label: Mask value that marks out-of-distribution pixels (may equal ``ignore_index``).
        temperature: When set, also score the temperature-scaled softmax (``softmax_scaled``).
    """

    num_classes: int
    ignore_index: int | None = 255
    ood_label: int | None = None
    temperature: float | None = None
    images: int = 0
    confusion: torch.Tensor = field(init=False)
    calibration: dict[str, CalibrationStats] = field(init=False)
    errors: dict[str, DetectionStats] = field(default_factory=dict, init=False)
    ood: dict[str, DetectionStats] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        self.calibration = {"softmax": CalibrationStats(), "mc_mean": CalibrationStats()}
        if self.temperature is not None:
            self.calibration["softmax_scaled"] = CalibrationStats()

    def add(self, analysis: Analysis, mask: np.ndarray) -> None:
        """Fold one analysed image and its ``(H, W)`` mask in."""
        y = torch.from_numpy(mask.reshape(-1))
        valid = (y >= 0) & (y < self.num_classes)
        if self.ignore_index is not None:
            valid &= y != self.ignore_index
        pred = torch.from_numpy(analysis.prediction.reshape(-1))
        self.confusion += confusion_matrix(pred[valid], y[valid], self.num_classes, None)
        c = self.num_classes
        self.calibration["softmax"].update(torch.from_numpy(analysis.probs.reshape(c, -1)).T[valid], y[valid])
        if self.temperature is not None:
            probs = torch.from_numpy(analysis.probs.reshape(c, -1)).T[valid]
            self.calibration["softmax_scaled"].update(rescale(probs, 1.0 / self.temperature, dim=1), y[valid])
        self.calibration["mc_mean"].update(torch.from_numpy(analysis.mean_probs.reshape(c, -1)).T[valid], y[valid])
        wrong = pred[valid] != y[valid]
        ood = (y == self.ood_label) if self.ood_label is not None else torch.zeros_like(valid)
        for name in DETECTION_MAPS:
            lo, hi = analysis.ranges[name]
            score, s_lo, s_hi = detection_score(name, analysis.maps[name].reshape(-1), lo, hi)
            s = torch.from_numpy(np.ascontiguousarray(score))
            self.errors.setdefault(name, DetectionStats(s_lo, s_hi)).update(s[valid], wrong)
            if self.ood_label is not None:
                scored = valid | ood
                self.ood.setdefault(name, DetectionStats(s_lo, s_hi)).update(s[scored], ood[scored])
        self.images += 1

    def result(self, class_names: Iterable[str]) -> dict[str, object]:
        """All metrics as a JSON-ready dict."""
        quality = segmentation_scores(self.confusion)
        names = list(class_names)
        quality["iou_per_class"] = dict(zip(names, cast(list[float | None], quality.pop("iou")), strict=True))
        return {
            "images": self.images,
            "segmentation": quality,
            "calibration": {k: v.result() for k, v in self.calibration.items()},
            "error_detection": {k: {"auroc": v.auroc(), "aurc": v.aurc()} for k, v in self.errors.items()},
            "ood_detection": {k: {"auroc": v.auroc()} for k, v in self.ood.items()} if self.ood_label is not None else None,
            "ood_label": self.ood_label,
            "ignore_index": self.ignore_index,
            "notes": "errors: argmax of the MC-mean probabilities != label; confidence is scored as 1 - confidence; ECE: top-label, 15 equal-width bins",
        }
