"""Pre-annotations for Label Studio: tasks whose predictions are the model's masks as brush (RLE) results.

The brush RLE is Label Studio's own bit-packed format (``label_studio_converter.brush``): a 32-bit count of RGBA
bytes, a 5-bit word size minus one, four 4-bit run-length field sizes minus one, then records — a ``1`` bit, a 2-bit
index into the field sizes, the run length minus one in that many bits and the 8-bit value — padded to whole bytes.
A mask pixel is four bytes, 255 where the class is, 0 elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

__all__ = ["BRUSH_FROM", "BRUSH_TO", "LabelledImage", "brush_rle", "labeling_config", "task"]

BRUSH_FROM = "tag"
BRUSH_TO = "image"
_WORD = 8
_FIELDS = (3, 4, 8, 16)


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths and values of the runs of equal consecutive values of a 1-D array."""
    if values.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, values.dtype)
    ends = np.flatnonzero(values[1:] != values[:-1])
    stops = np.append(ends, values.size - 1)
    lengths = np.diff(np.append(-1, stops))
    return lengths, values[stops]


def _record(length: int, value: int) -> str:
    index = next(i for i, bits in enumerate(_FIELDS) if length <= 2**bits)
    return f"1{index:02b}{length - 1:0{_FIELDS[index]}b}{value:08b}"


def brush_rle(mask: np.ndarray) -> list[int]:
    """Label Studio's brush RLE of a boolean mask.

    Args:
        mask: ``(H, W)`` bool, row-major.

    Returns:
        The RLE bytes as ints (what a ``brushlabels`` result's ``value.rle`` holds).
    """
    rgba = np.repeat(np.where(np.asarray(mask, bool).ravel(), 255, 0).astype(np.uint8), 4)
    header = f"{rgba.size:032b}{_WORD - 1:05b}" + "".join(f"{f - 1:04b}" for f in _FIELDS)
    parts = [header]
    longest = 2 ** _FIELDS[-1]
    for length, value in zip(*_runs(rgba), strict=True):
        whole, rest = divmod(int(length), longest)
        parts.extend([_record(longest, int(value))] * whole)
        if rest:
            parts.append(_record(rest, int(value)))
    bits = "".join(parts)
    bits += "0" * (-len(bits) % 8)
    return list(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))


@dataclass(frozen=True)
class LabelledImage:
    """One image to pre-annotate.

    Attributes:
        image: What the task's ``data.image`` holds (a URL or path Label Studio can open).
        labels: ``(H, W)`` predicted class indices at the image's own size.
        score: The image-level uncertainty score it was ranked by.
        score_error: Its Monte-Carlo standard error (``None`` when unknown).
        rank: 1-based position in the chosen batch.
        file: The input file.
    """

    image: str
    labels: np.ndarray
    score: float
    score_error: float | None
    rank: int
    file: str


def task(item: LabelledImage, classes: Sequence[str], by: str, model_version: str) -> dict[str, Any]:
    """A Label Studio task with one prediction: a ``brushlabels`` result per predicted class.

    Args:
        item: The image and its predicted labels.
        classes: Class names by index.
        by: Name of the score (stored in ``data`` and ``meta`` for sorting in Label Studio).
        model_version: The prediction's ``model_version``.
    """
    height, width = item.labels.shape
    results = []
    for index in np.unique(item.labels).tolist():
        results.append(
            {
                "id": f"{BRUSH_FROM}-{index}",
                "from_name": BRUSH_FROM,
                "to_name": BRUSH_TO,
                "type": "brushlabels",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {"format": "rle", "rle": brush_rle(item.labels == index), "brushlabels": [classes[index]]},
            }
        )
    data = {BRUSH_TO: item.image, "file": item.file, by: item.score, f"{by}_error": item.score_error, "rank": item.rank}
    return {"data": data, "predictions": [{"model_version": model_version, "score": item.score, "result": results}]}


def labeling_config(classes: Sequence[str], colours: Sequence[str]) -> str:
    """The Label Studio labelling interface the tasks fit (``<BrushLabels>`` on an ``<Image>``)."""
    labels = "\n".join(f"    <Label value={quoteattr(name)} background={quoteattr(colour)}/>" for name, colour in zip(classes, colours, strict=True))
    image = f'  <Image name="{BRUSH_TO}" value="${BRUSH_TO}" zoom="true"/>'
    return f'<View>\n{image}\n  <BrushLabels name="{BRUSH_FROM}" toName="{BRUSH_TO}">\n{labels}\n  </BrushLabels>\n</View>\n'
