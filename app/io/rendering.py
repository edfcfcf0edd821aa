"""Render maps to colour images on fixed scales, and encode PNGs.

Colour scales never stretch to a single image's min-max: a value ``v`` of a
map with range ``[lo, hi]`` always gets the same colour, so two images' maps
can be compared by eye.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from app.engine.analysis import Analysis
from app.maps.registry import MAPS

__all__ = [
    "ERROR_COLOURS",
    "ERROR_DESCRIPTION",
    "ERROR_NAMES",
    "colour_lut",
    "error_legend",
    "map_images",
    "png_bytes",
    "render_errors",
    "render_labels",
    "render_scalar",
]

_ANCHORS = {
    "viridis": ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"],
    "inferno": ["#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925", "#fb9b06", "#f7d13d", "#fcffa4"],
}

ERROR_COLOURS = ("#202020", "#e6194b", "#a0a0a0")
ERROR_NAMES = ("correct", "wrong", "not scored")
ERROR_DESCRIPTION = "0 (dark): prediction equals the mask; 1 (red): it differs; 2 (grey): not scored (ignore_index, OOD or not a class of the model)."


def _hex(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def colour_lut(name: str) -> np.ndarray:
    """A ``(256, 3)`` uint8 lookup table for colour map ``name``."""
    if name not in _ANCHORS:
        raise ValueError(f"unknown colour map {name!r}; choose one of {sorted(_ANCHORS)}")
    anchors = np.array([_hex(c) for c in _ANCHORS[name]], dtype=np.float64)
    xs = np.linspace(0.0, 1.0, len(anchors))
    grid = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(grid, xs, anchors[:, k]) for k in range(3)], axis=1).round().astype(np.uint8)


def render_scalar(values: np.ndarray, lo: float, hi: float, cmap: str) -> np.ndarray:
    """``(H, W)`` floats → ``(H, W, 3)`` uint8 on the fixed scale ``[lo, hi]`` (clipped)."""
    if hi <= lo:
        raise ValueError(f"empty range [{lo}, {hi}]")
    t = np.clip((np.asarray(values, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return colour_lut(cmap)[np.rint(t * 255).astype(np.intp)]


def render_labels(labels: np.ndarray, colours: list[str]) -> np.ndarray:
    """``(H, W)`` class indices → ``(H, W, 3)`` uint8 in class colours."""
    palette = np.array([_hex(c) for c in colours], dtype=np.uint8)
    return palette[np.asarray(labels, dtype=np.intp)]


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode ``(H, W, 3)`` uint8 as PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def map_images(analysis: Analysis, colours: list[str]) -> dict[str, np.ndarray]:
    """Colour ``(H, W, 3)`` uint8 renderings: the prediction in class ``colours`` and every map on its fixed scale."""
    images = {"prediction": render_labels(analysis.prediction, colours)}
    for spec in MAPS:
        lo, hi = analysis.ranges[spec.name]
        images[spec.name] = render_scalar(analysis.maps[spec.name], lo, hi, spec.colourmap)
    return images


def error_legend() -> list[dict[str, str]]:
    """Name and ``#rrggbb`` colour of each error-map code (0 correct, 1 wrong, 2 not scored)."""
    return [{"name": name, "colour": colour} for name, colour in zip(ERROR_NAMES, ERROR_COLOURS, strict=True)]


def render_errors(codes: np.ndarray) -> np.ndarray:
    """``(H, W)`` error codes → ``(H, W, 3)`` uint8 in the :data:`ERROR_COLOURS`."""
    return render_labels(codes, list(ERROR_COLOURS))
