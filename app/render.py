"""Render maps to colour images on fixed scales, and encode PNGs.

Colour scales never stretch to a single image's min-max: a value ``v`` of a
map with range ``[lo, hi]`` always gets the same colour, so two images' maps
can be compared by eye.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

_ANCHORS = {
    "viridis": ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"],
    "inferno": ["#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925", "#fb9b06", "#f7d13d", "#fcffa4"],
}

MAP_COLOURMAPS = {
    "confidence": "viridis",
    "entropy": "inferno",
    "expected_entropy": "inferno",
    "mutual_information": "inferno",
    "variance": "inferno",
}


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


def overlay(rgb: np.ndarray, colour: np.ndarray, opacity: float) -> np.ndarray:
    """Blend ``colour`` over ``rgb`` with ``opacity`` in ``[0, 1]``; both ``(H, W, 3)`` uint8."""
    a = float(np.clip(opacity, 0.0, 1.0))
    return np.rint(rgb.astype(np.float32) * (1 - a) + colour.astype(np.float32) * a).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode ``(H, W, 3)`` uint8 as PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()
