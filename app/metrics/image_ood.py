"""Image-level out-of-distribution verdicts: where an image's map means fall among the validation images'.

The reference is, per map, the sorted image-means of the map over a validation split (stored in the model card
when it is calibrated). An image whose mean is more uncertain than ``threshold`` of the reference images is flagged.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.maps.registry import DETECTION_MAPS, get_map

__all__ = ["UNUSUAL_PERCENTILE", "ImageOodResult", "image_verdicts", "uncertainty_percentile"]

UNUSUAL_PERCENTILE = 99.0


@dataclass(frozen=True)
class ImageOodResult:
    """One map's image-level verdict.

    Attributes:
        map: The map's name.
        image_mean: The map's mean over this image.
        percentile: Share (in %) of reference images that are *less* uncertain by this map than this image
            (ties count half); 100 means more uncertain than every validation image.
        unusual: ``percentile >= threshold``.
        message: The verdict in words.
    """

    map: str
    image_mean: float
    percentile: float
    unusual: bool
    message: str


def uncertainty_percentile(value: float, reference: Sequence[float], uncertain_when: str) -> float:
    """Percent of ``reference`` values less uncertain than ``value`` (ties count half).

    Args:
        value: This image's mean.
        reference: Reference image means, sorted ascending.
        uncertain_when: ``"high"`` or ``"low"``: which end of the map means uncertain.

    Raises:
        ValueError: an empty reference.
    """
    if not reference:
        raise ValueError("the reference distribution is empty")
    below = bisect.bisect_left(reference, value)
    above = len(reference) - bisect.bisect_right(reference, value)
    ties = len(reference) - below - above
    less_uncertain = below if uncertain_when == "high" else above
    return 100.0 * (less_uncertain + 0.5 * ties) / len(reference)


def image_verdicts(means: Mapping[str, float], reference: Mapping[str, Sequence[float]], threshold: float = UNUSUAL_PERCENTILE) -> list[ImageOodResult]:
    """A verdict per detection map that has a reference.

    Args:
        means: Map name → this image's mean.
        reference: Map name → sorted reference image means.
        threshold: Percentile from which an image is flagged as unlike the reference.
    """
    results = []
    for name in DETECTION_MAPS:
        if name not in reference or name not in means:
            continue
        spec = get_map(name)
        pct = uncertainty_percentile(means[name], reference[name], spec.uncertain_when)
        unusual = pct >= threshold
        if unusual:
            message = f"{spec.title}: more uncertain than {pct:.0f} % of validation images: this input is unlike what the model was trained on"
        else:
            message = f"{spec.title}: more uncertain than {pct:.0f} % of validation images: within what the model was trained on"
        results.append(ImageOodResult(map=name, image_mean=float(means[name]), percentile=pct, unusual=unusual, message=message))
    return results
