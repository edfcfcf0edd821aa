"""One image-level test with a stated false-alarm rate: a combined score and its split-conformal p-value.

The score of an image is the largest of its standardised component values (:func:`combined_score`):

* every detection map's image mean, oriented so that larger means more uncertain (softmax confidence negated);
* the feature distance's typicality (:class:`~app.metrics.image_ood.ImageTypicality`): the one-sided Mahalanobis
  distance of the map's image ``(mean, standard deviation)`` from the density's fit images', as a distance
  (the square root of its score).

Each component is centred on its median over a *fit* split and scaled by its upper spread there
(``(q90 − q50) / 1.2816``, the standard deviation of a normal upper tail); the maximum is an OR of the detectors — a
blurred scene moves only the typicality, an ambiguous one only the softmax maps — whose single threshold is set by
the calibration below rather than per detector (four maps each at their 99th percentile flag up to 4 % of fresh
scenes).

The p-value of a score ``s`` is split-conformal: ``p = (1 + #{calibration scores ≥ s}) / (n + 1)`` over ``n`` images of
a *calibration* split that took no part in fitting anything (neither the components' centres and scales nor the
feature density). When the image is exchangeable with the calibration images (drawn from the same distribution),
``P(p ≤ α) ≤ α`` for every ``α``: the test's false-alarm rate is at most ``α``, whatever the score's distribution.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.maps.registry import get_map
from app.metrics.image_ood import ImageTypicality

__all__ = [
    "DEFAULT_ALPHA",
    "TYPICALITY",
    "Component",
    "ImageCheck",
    "ImageCheckStatus",
    "check_image",
    "combined_score",
    "component_values",
    "conformal_p_value",
    "fit_components",
    "knows_text",
    "not_checked",
]

DEFAULT_ALPHA = 0.01
TYPICALITY = "feature_typicality"
_UPPER_Z = 1.2815515655446004  # the standard normal's 90th percentile

ImageCheckStatus = Literal["unusual", "not_flagged", "not_checked"]


@dataclass(frozen=True)
class Component:
    """One standardised part of the combined score: ``(value − centre) / scale``."""

    name: str
    centre: float
    scale: float

    def standardise(self, value: float) -> float:
        """The component's standardised value."""
        return (value - self.centre) / self.scale


@dataclass(frozen=True)
class ImageCheck:
    """The image-level verdict.

    Attributes:
        status: ``"unusual"`` (``p ≤ α``), ``"not_flagged"`` (the test ran and did not reject: *not* evidence that the
            image is like the training data) or ``"not_checked"`` (no reference for this setting or model).
        message: The verdict in words, with what was checked and what the model knows.
        reason: Why it was not checked, or which component drove the score.
        reference: What the image was compared with (``None`` when not checked).
        p_value: The conformal p-value (``None`` when not checked).
        alpha: The false-alarm rate the test is run at (``None`` when not checked).
        score: The combined score (``None`` when not checked).
        components: Component name → standardised value.
    """

    status: ImageCheckStatus
    message: str
    reason: str
    reference: str | None = None
    p_value: float | None = None
    alpha: float | None = None
    score: float | None = None
    components: dict[str, float] | None = None


def conformal_p_value(score: float, calibration: Sequence[float]) -> float:
    """``(1 + #{c ∈ calibration : c ≥ score}) / (n + 1)``; ``calibration`` sorted ascending.

    Raises:
        ValueError: an empty calibration set.
    """
    if not calibration:
        raise ValueError("the calibration scores are empty")
    at_least = len(calibration) - bisect.bisect_left(calibration, score)
    return (1 + at_least) / (len(calibration) + 1)


def component_values(means: Mapping[str, float], maps: Sequence[str], typicality: ImageTypicality | None, pair: tuple[float, float] | None) -> dict[str, float]:
    """The raw components of one image: each of ``maps``' image mean oriented to "larger is more uncertain", and the
    typicality distance of the feature distance's ``pair`` = (mean, standard deviation) when ``typicality`` is given."""
    values = {name: -float(means[name]) if get_map(name).uncertain_when == "low" else float(means[name]) for name in maps}
    if typicality is not None and pair is not None:
        values[TYPICALITY] = math.sqrt(max(typicality.score(pair), 0.0))
    return values


def fit_components(values: Sequence[Mapping[str, float]]) -> list[Component]:
    """Median and upper spread ``(q90 − q50) / 1.2816`` of every component over fit images (the standard deviation when
    the upper spread is 0, then 1).

    Raises:
        ValueError: fewer than 2 images.
    """
    if len(values) < 2:
        raise ValueError(f"need at least 2 fit images, got {len(values)}")
    components = []
    for name in values[0]:
        x = np.asarray([v[name] for v in values], dtype=np.float64)
        centre = float(np.median(x))
        scale = float(np.quantile(x, 0.9) - centre) / _UPPER_Z
        if not scale > 0:
            scale = float(x.std())
        components.append(Component(name=name, centre=centre, scale=scale if scale > 0 else 1.0))
    return components


def combined_score(values: Mapping[str, float], components: Sequence[Component]) -> tuple[float, dict[str, float]]:
    """The largest standardised component, and every standardised component.

    Raises:
        KeyError: a component is missing from ``values``.
    """
    z = {c.name: c.standardise(values[c.name]) for c in components}
    return max(z.values()), z


def _component_title(name: str) -> str:
    return "feature-space typicality (the mean and spread of the feature distance)" if name == TYPICALITY else get_map(name).title.lower()


def knows_text(domain: str) -> str:
    """What the model knows, from its card, as the verdict's last sentence."""
    domain = domain.strip()
    return f"What the model knows, from its card: {domain}" if domain else "The model's card does not say what it was trained on."


def not_checked(reason: str, domain: str) -> ImageCheck:
    """The verdict when there is no reference for this setting or model: says so, and what the model knows."""
    return ImageCheck(status="not_checked", message=f"Not checked: {reason}. {knows_text(domain)}", reason=reason)


def check_image(
    values: Mapping[str, float],
    components: Sequence[Component],
    calibration: Sequence[float],
    alpha: float,
    reference: str,
    domain: str,
    note: str = "",
) -> ImageCheck:
    """Run the test on one image's raw component values (:func:`component_values`).

    Args:
        values: The image's raw components.
        components: The fitted standardisation.
        calibration: The calibration images' scores, sorted.
        alpha: Unusual at ``p <= alpha``.
        reference: The calibration images in words.
        domain: The card's domain.
        note: Appended to the reason (e.g. that the analysis drew other samples than the reference).
    """
    score, z = combined_score(values, components)
    p = conformal_p_value(score, calibration)
    driver = max(z, key=lambda k: z[k])
    reason = f"largest standardised component: {_component_title(driver)} ({z[driver]:+.2f}){note}"
    n = len(calibration)
    if p <= alpha:
        k = round(p * (n + 1)) - 1
        higher = f"none of the {n} reference images" if k == 0 else f"only {k} of the {n} reference images"
        message = (
            f"Unusual image: p = {p:.3g} ≤ α = {alpha:g}; {higher} ({reference}) score as high, mostly by "
            f"{_component_title(driver)}. Treat every label and confidence as a guess. {knows_text(domain)}"
        )
        status: ImageCheckStatus = "unusual"
    else:
        message = (
            f"Not flagged: p = {p:.2f} > α = {alpha:g} against {n} reference images ({reference}). No uncertainty map marks this "
            f"image as unusual, which does not show that it is like the training data. {knows_text(domain)}"
        )
        status = "not_flagged"
    return ImageCheck(status=status, message=message, reason=reason, reference=reference, p_value=p, alpha=alpha, score=score, components=z)
