"""The maps' fixed display scales as the page uses them: 8-bit quantised positions, colour tables and colour-bar ticks.

A value ``v`` of a map is sent as ``q = round(255 * spec.to_display(v, C))``: the index of its colour in the map's
256-entry colour table (the same colour the PNG renderings use) and, through ``spec.from_display(q / 255)``, an
approximate value for the readout until the exact one arrives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.io.rendering import colour_lut
from app.maps.registry import MapSpec

__all__ = ["LEVELS", "Tick", "colour_table_hex", "colourise", "quantise", "ticks"]

LEVELS = 255
_NICE = (1, 2, 5)


def quantise(spec: MapSpec, values: np.ndarray, num_classes: int) -> np.ndarray:
    """``(H, W)`` values → ``(H, W)`` uint8 positions on the map's fixed colour scale, ``round(255 * to_display(v))``."""
    positions: np.ndarray = spec.to_display(values, num_classes)
    levels: np.ndarray = np.rint(positions * LEVELS).astype(np.uint8)
    return levels


def colourise(spec: MapSpec, values: np.ndarray, num_classes: int) -> np.ndarray:
    """``(H, W)`` values → ``(H, W, 3)`` uint8: colour-table entry :func:`quantise` of each value."""
    colours: np.ndarray = colour_lut(spec.colourmap)[quantise(spec, values, num_classes)]
    return colours


def colour_table_hex(name: str) -> str:
    """The 256-entry colour table ``name`` as 1536 hex digits (``rrggbb`` per entry), for the page."""
    return colour_lut(name).astype(np.uint8).tobytes().hex()


@dataclass(frozen=True)
class Tick:
    """One tick of a colour bar: a true value at its position on the (possibly non-linear) scale."""

    value: float
    position: float
    label: str


def _label(value: float) -> str:
    return f"{value:.3g}"


def _candidates(lo: float, hi: float) -> list[float]:
    top = math.floor(math.log10(max(abs(lo), abs(hi)))) if max(abs(lo), abs(hi)) > 0 else 0
    values = {round(m * 10.0**k, 12) for k in range(top - 5, top + 1) for m in range(1, 10)}
    return sorted(v for v in values if lo < v < hi)


def ticks(spec: MapSpec, num_classes: int, min_gap: float = 0.14, most: int = 6) -> list[Tick]:
    """Ticks of a map's colour bar: both ends, then round values spread as evenly as the scale allows.

    Values ``m * 10**k`` inside the range are added one at a time, each time the one farthest (in bar
    position, ``spec.to_display``) from the ticks already placed, with ``m`` in 1, 2, 5 preferred; no two
    ticks are closer than ``min_gap`` of the bar.

    Args:
        spec: The map.
        num_classes: ``C`` (the range depends on it).
        min_gap: Smallest distance between two ticks, as a share of the bar.
        most: Largest number of ticks.
    """
    lo, hi = spec.range(num_classes)
    candidates = _candidates(lo, hi)
    positions = {v: float(spec.to_display(np.array(v), num_classes)) for v in candidates}
    kept = {lo: 0.0, hi: 1.0}

    def score(value: float) -> float:
        gap = min(abs(positions[value] - p) for p in kept.values())
        nice = round(value / 10.0 ** math.floor(math.log10(value))) in _NICE if value > 0 else True
        return gap - (0.0 if nice else 0.08)

    while len(kept) < most:
        free = [v for v in candidates if v not in kept and min(abs(positions[v] - p) for p in kept.values()) >= min_gap]
        if not free:
            break
        best = max(free, key=score)
        kept[best] = positions[best]
    return [Tick(value=v, position=p, label=_label(v)) for v, p in sorted(kept.items(), key=lambda item: item[1])]
