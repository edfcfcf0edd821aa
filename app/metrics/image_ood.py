"""Image-level out-of-distribution verdicts: where an image's map means fall among the validation images'.

The reference is, per map, the sorted image-means of the map over a validation split (stored in the model card
when it is calibrated). An image whose mean is more uncertain than ``threshold`` of the reference images is flagged.

The feature distance (:mod:`app.maps.density`) is judged by its image mean *and spread*: its values are percentiles of
validation pixels, so an in-distribution image's pixels spread over ``[0, 1]`` (mean ≈ 0.5, standard deviation ≈
0.28); a far-from-training image moves the mean up, a blurred or low-contrast one squeezes the spread (no pixel is
atypical any more). :class:`ImageTypicality` scores the pair by its Mahalanobis distance to the fit images' pairs,
counting only those two directions: a lower mean (features nearer the training data) or a wider spread is no sign of
an unfamiliar input, and counting them nearly doubled the false alarms on in-distribution test scenes (6 % instead of
3.5 % of 200 at the 99th percentile).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from app.maps.registry import DETECTION_MAPS, get_map
from app.metrics.detection import DetectionStats

__all__ = [
    "UNUSUAL_PERCENTILE",
    "ImageOodResult",
    "ImageTypicality",
    "image_auroc",
    "image_verdicts",
    "typicality_verdict",
    "uncertainty_percentile",
]

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


def image_auroc(inside: Sequence[float], outside: Sequence[float], uncertain_when: str = "high") -> float | None:
    """AUROC of an image-level score for telling ``outside`` images from ``inside`` ones (exact, ties count half).

    Args:
        inside: The in-distribution images' scores (e.g. a map's image means).
        outside: The other images' scores.
        uncertain_when: ``"high"`` or ``"low"``: which end of the score means "unlike the inside images".

    Returns:
        ``None`` when either side is empty.
    """
    sign = -1.0 if uncertain_when == "low" else 1.0
    stats = DetectionStats()
    stats.update(sign * np.asarray([*inside, *outside], dtype=np.float64), np.r_[np.zeros(len(inside), bool), np.ones(len(outside), bool)])
    return stats.auroc()


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
        # Never "within what the model saw": a map that does not flag an image is no evidence that the image is familiar.
        message = f"{spec.title}: more uncertain than {pct:.0f} % of validation images" + (" (at or above this map's 99th percentile)" if unusual else "")
        results.append(ImageOodResult(map=name, image_mean=float(means[name]), percentile=pct, unusual=unusual, message=message))
    return results


class ImageTypicality:
    """How unusual an image's ``(mean, standard deviation)`` of a map is among reference images': a 2-D Gaussian.

    ``score(v) = dᵀ S⁻¹ d`` with ``d = (max(v₁ − m₁, 0), min(v₂ − m₂, 0))``: the deviation from the reference pairs'
    mean ``m`` towards a higher mean or a lower spread only, ``S`` the pairs' (population) covariance plus a ridge of
    ``1e-9 · tr(S)/2``; :attr:`reference` holds the reference images' own scores, sorted.

    Args:
        pairs: ``(mean, standard deviation)`` of the map over each reference image, at least 3.

    Raises:
        ValueError: fewer than 3 pairs.
    """

    def __init__(self, pairs: Sequence[Sequence[float]]) -> None:
        x = np.asarray(pairs, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] < 3:
            raise ValueError(f"need at least 3 (mean, standard deviation) pairs, got shape {x.shape}")
        self.centre = x.mean(axis=0)
        cov = np.cov(x.T, bias=True)
        cov += 1e-9 * max(float(np.trace(cov)), 1e-300) / 2 * np.eye(2)
        self.precision = np.linalg.inv(cov)
        self.reference = sorted(self.score(v) for v in x)

    def score(self, pair: Sequence[float]) -> float:
        """The squared Mahalanobis distance of ``(mean, standard deviation)`` from the reference's centre, one-sided per axis."""
        d = np.asarray(pair, dtype=np.float64) - self.centre
        d = np.array([max(d[0], 0.0), min(d[1], 0.0)])
        return float(d @ self.precision @ d)


def typicality_verdict(name: str, mean: float, spread: float, typicality: ImageTypicality, threshold: float = UNUSUAL_PERCENTILE) -> ImageOodResult:
    """The verdict of map ``name`` by :class:`ImageTypicality` of its image ``mean`` and standard deviation ``spread``.

    ``percentile`` is the share of reference images whose own pair is more typical; the message says which way the image
    is unusual (mean above the reference's: far from the training features; spread below: blurred or low contrast).
    """
    spec = get_map(name)
    pct = uncertainty_percentile(typicality.score((mean, spread)), typicality.reference, "high")
    unusual = pct >= threshold
    if not unusual:
        message = f"{spec.title}: more unusual than {pct:.0f} % of validation images (mean and spread)"
    else:
        centre_mean, centre_spread = typicality.centre
        why = []
        if mean > centre_mean:
            why.append("its features are farther from the training features")
        if spread < centre_spread:
            why.append("none of its pixels is atypical, as in blurred or low-contrast images")
        reason = " and ".join(why) or "its mean and spread are unlike the validation images'"
        message = f"{spec.title}: more unusual than {pct:.0f} % of validation images ({reason}; at or above its 99th percentile)"
    return ImageOodResult(map=name, image_mean=float(mean), percentile=pct, unusual=unusual, message=message)
