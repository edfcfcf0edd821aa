"""The map registry: the one place a map is described.

Every Python user (engine results, rendering, encoding, evaluation, the page) and, through the page's
config, the page's JavaScript read a map's name, range, colour map, title, meaning and detection
direction from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

_Values = TypeVar("_Values", float, np.ndarray)

__all__ = [
    "DETECTION_MAPS",
    "MAPS",
    "MAP_NAMES",
    "PANEL_MAPS",
    "PREDICTION_DESCRIPTION",
    "SAMPLED_MAPS",
    "MapSpec",
    "get_map",
    "map_ranges",
    "set_size_name",
]


def _log_classes(num_classes: int) -> tuple[float, float]:
    return 0.0, math.log(num_classes)


@dataclass(frozen=True)
class MapSpec:
    """What one per-pixel map is and how it is shown.

    Attributes:
        name: Key in results, files and the API (``"mutual_information"``).
        title: Human title (``"Mutual information"``).
        meaning: One line on what the value is, used in JSON and file outputs.
        explanation: The page's sentence under the panel.
        colourmap: Colour map of its fixed scale (``"viridis"`` or ``"inferno"``).
        value_range: ``C`` → the fixed ``(lo, hi)`` of the map for ``C`` classes.
        panel: Position among the page's map panels; ``None``: not shown as a panel.
        uncertain_when: ``"high"`` if a high value means "less trustworthy", ``"low"`` otherwise.
        detection: Scored for error and OOD detection by the evaluator.
        display_power: The colour scale's exponent: a value ``v`` is drawn at position ``((v - lo) / (hi - lo)) ** p``
            of the colour map; ``1`` is linear, ``0.5`` (square root) makes small values visible. Fixed per map, never
            per image, so two images still compare by eye.
        sampled: The value is a Monte-Carlo estimate over the dropout samples (so it carries MC error); ``False`` for
            maps of the deterministic pass.
        needs: What a bundle must have to compute the map (``"fitted feature density"``); ``None``: every bundle can.
        needs_command: The command that provides it (``"seg-uncertainty fit-density --help"``).
        unit: What a value is measured in (``"nats"``), for legends and the API description.
    """

    name: str
    title: str
    meaning: str
    explanation: str
    colourmap: str
    value_range: Callable[[int], tuple[float, float]]
    panel: int | None
    uncertain_when: Literal["high", "low"]
    detection: bool
    display_power: float = 1.0
    sampled: bool = True
    needs: str | None = None
    needs_command: str | None = None
    unit: str = ""

    def range(self, num_classes: int) -> tuple[float, float]:
        """The fixed ``(lo, hi)`` for ``num_classes`` classes."""
        if num_classes < 2:
            raise ValueError(f"a segmentation model has at least 2 classes, got {num_classes}")
        return self.value_range(num_classes)

    def range_text(self) -> str:
        """The fixed range in words, with ``C`` for the number of classes where it depends on it: ``"[1/C, 1]"``, ``"[0, log C]"``."""
        return f"[{_bound_text(self, 0)}, {_bound_text(self, 1)}]"

    def scale_text(self) -> str:
        """The colour scale in words: ``"linear"``, ``"square root"``, ``"cube root"`` or ``"power 4"`` (:attr:`display_power`)."""
        return _SCALE_NAMES.get(round(self.display_power, 6), f"power {self.display_power:g}")

    def to_display(self, values: np.ndarray, num_classes: int) -> np.ndarray:
        """Values → position on the colour scale in ``[0, 1]`` (clipped), float64."""
        lo, hi = self.range(num_classes)
        t = np.clip((np.asarray(values, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
        return t if self.display_power == 1.0 else np.power(t, self.display_power)

    def from_display(self, positions: np.ndarray, num_classes: int) -> np.ndarray:
        """The inverse of :meth:`to_display`: colour-scale positions in ``[0, 1]`` → values."""
        lo, hi = self.range(num_classes)
        t = np.clip(np.asarray(positions, dtype=np.float64), 0.0, 1.0)
        return lo + (hi - lo) * (t if self.display_power == 1.0 else np.power(t, 1.0 / self.display_power))

    def uncertainty_score(self, values: np.ndarray, num_classes: int) -> tuple[np.ndarray, float, float]:
        """The map as a score where higher means less trustworthy, with the score's range.

        Args:
            values: The map's values, any shape.
            num_classes: ``C``.

        Returns:
            The scores and their ``(lo, hi)``.
        """
        lo, hi = self.range(num_classes)
        if self.uncertain_when == "low":
            return self.oriented(values), 1.0 - hi, 1.0 - lo
        return values, lo, hi

    def oriented(self, values: _Values) -> _Values:
        """``values`` (an array or a number) as a score where higher means less trustworthy: ``1 − v`` for a map that is
        uncertain when low (softmax confidence), ``v`` itself otherwise."""
        return 1.0 - values if self.uncertain_when == "low" else values


_SCALE_NAMES = {1.0: "linear", 0.5: "square root", round(1 / 3, 6): "cube root"}
_SYMBOLIC_BOUNDS: tuple[tuple[str, Callable[[int], float]], ...] = (("1/C", lambda c: 1.0 / c), ("log C", lambda c: math.log(c)))


def _bound_text(spec: MapSpec, end: int) -> str:
    """Bound ``end`` (0: low, 1: high) of ``spec``'s range in words: a number when it does not depend on ``C``, else its
    formula in ``C`` (``1/C``, ``log C``), else ``"f(C)"``."""
    values = [spec.range(c)[end] for c in (2, 3, 7)]
    if values[0] == values[1] == values[2]:
        return f"{values[0]:g}"
    for text, bound in _SYMBOLIC_BOUNDS:
        if all(math.isclose(v, bound(c)) for v, c in zip(values, (2, 3, 7), strict=True)):
            return text
    return "f(C)"


PREDICTION_DESCRIPTION = "argmax of the MC-mean class probabilities, in class colours"

MAPS: tuple[MapSpec, ...] = (
    MapSpec(
        name="confidence",
        title="Softmax confidence",
        meaning="max softmax probability of the deterministic pass; over-confident and blind to novelty",
        explanation="Max softmax probability of the deterministic pass. Alone it misleads: networks are often confidently wrong, "
        "most of all on objects they never saw, so compare it with mutual information.",
        colourmap="viridis",
        value_range=lambda c: (1.0 / c, 1.0),
        panel=0,
        uncertain_when="low",
        detection=True,
        sampled=False,
        unit="probability",
    ),
    MapSpec(
        name="entropy",
        title="Predictive entropy",
        meaning="predictive entropy H[mean_t p_t]: total uncertainty, aleatoric + epistemic",
        explanation="H[p̄] of the mean MC-sample probabilities: total uncertainty, high at boundaries and on ambiguous pixels.",
        colourmap="inferno",
        value_range=_log_classes,
        panel=1,
        uncertain_when="high",
        detection=True,
        display_power=0.5,
        unit="nats",
    ),
    MapSpec(
        name="expected_entropy",
        title="Expected entropy",
        meaning="mean_t H[p_t]: the aleatoric (data) part of the entropy",
        explanation="Mean of H[p_t] over the samples: the aleatoric (data) part of the entropy.",
        colourmap="inferno",
        value_range=_log_classes,
        panel=None,
        uncertain_when="high",
        detection=False,
        display_power=0.5,
        unit="nats",
    ),
    MapSpec(
        name="mutual_information",
        title="Mutual information",
        meaning="H[mean p] - mean_t H[p_t]: epistemic uncertainty, disagreement between dropout samples",
        explanation="H[p̄] − mean H[p_t]: epistemic uncertainty (the model does not know), which flags novel objects.",
        colourmap="inferno",
        value_range=_log_classes,
        panel=3,
        uncertain_when="high",
        detection=True,
        display_power=1 / 3,
        unit="nats",
    ),
    MapSpec(
        name="variance",
        title="MC-dropout variance",
        meaning="MC-dropout variance of the predicted class's probability, mean_t (p_t - mean p)^2",
        explanation="Variance of the predicted class's probability across dropout samples: high where the samples disagree.",
        colourmap="inferno",
        value_range=lambda _c: (0.0, 0.25),
        panel=2,
        uncertain_when="high",
        detection=True,
        display_power=1 / 3,
        unit="probability²",
    ),
    MapSpec(
        name="feature_distance",
        title="Feature-space distance",
        meaning="share of validation pixels whose decoder features lie closer to their class's Gaussian than this pixel's "
        "(class-conditional Gaussian, tied covariance, Mahalanobis distance to the nearest class); 0 everywhere when the "
        "bundle has no fitted density",
        explanation="How unlike the training data this pixel's features are, as a percentile of validation pixels: 0.5 is "
        "typical, 1 beyond every validation pixel. One deterministic pass; it sees what the softmax does not.",
        colourmap="inferno",
        value_range=lambda _c: (0.0, 1.0),
        panel=4,
        uncertain_when="high",
        detection=True,
        display_power=4.0,
        sampled=False,
        needs="fitted feature density",
        needs_command="seg-uncertainty fit-density --help",
        unit="share of validation pixels",
    ),
)

MAP_NAMES: tuple[str, ...] = tuple(m.name for m in MAPS)
PANEL_MAPS: tuple[str, ...] = tuple(m.name for m in sorted((m for m in MAPS if m.panel is not None), key=lambda m: m.panel or 0))
DETECTION_MAPS: tuple[str, ...] = tuple(m.name for m in sorted((m for m in MAPS if m.detection), key=lambda m: (m.panel is None, m.panel or 0)))
SAMPLED_MAPS: tuple[str, ...] = tuple(m.name for m in MAPS if m.sampled)
_BY_NAME = {m.name: m for m in MAPS}


def get_map(name: str) -> MapSpec:
    """The spec of map ``name``.

    Raises:
        KeyError: naming the known maps.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown map {name!r}; the maps are {', '.join(MAP_NAMES)}") from None


def map_ranges(num_classes: int) -> dict[str, tuple[float, float]]:
    """Fixed value range of every map for ``num_classes`` classes."""
    return {m.name: m.range(num_classes) for m in MAPS}


def set_size_name(alpha: float) -> str:
    """The archive name of a conformal level's set-size map (``(H, W)`` uint8, not a map of :data:`MAPS`): ``set_size_10``
    for ``alpha = 0.1`` (alpha in hundredths)."""
    return f"set_size_{round(alpha * 100):02d}"
