"""Render maps to colour images on fixed scales, and encode PNGs.

Colour scales never stretch to a single image's min-max: a value ``v`` of a
map always gets the same colour, entry ``round(255 * ((v - lo) / (hi - lo)) ** p)``
of the exact 256-entry colour table, with the map's fixed range ``[lo, hi]`` and
display exponent ``p`` from the registry, so two images' maps can be compared by eye.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image

from app.engine.analysis import Analysis
from app.io.colour_tables import COLOUR_TABLES
from app.maps.registry import MAPS, MapSpec

__all__ = [
    "ERROR_COLOURS",
    "ERROR_DESCRIPTION",
    "ERROR_NAMES",
    "colour_entries",
    "colour_lut",
    "error_legend",
    "indexed_map_images",
    "indexed_png_bytes",
    "map_images",
    "png_bytes",
    "render_errors",
    "render_labels",
    "render_positions",
    "render_scalar",
    "scale_entries",
]

BAND_PIXELS = 1 << 20
ERROR_COLOURS = ("#202020", "#e6194b", "#a0a0a0")
ERROR_NAMES = ("correct", "wrong", "not scored")
ERROR_DESCRIPTION = "0 (dark): prediction equals the mask; 1 (red): it differs; 2 (grey): not scored (ignore_index, OOD or not a class of the model)."


def _hex(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


@cache
def _table(name: str) -> np.ndarray:
    table = np.array([_hex(c) for c in COLOUR_TABLES[name].split()], dtype=np.uint8)
    table.flags.writeable = False
    return table


def colour_lut(name: str) -> np.ndarray:
    """The exact ``(256, 3)`` uint8 table of colour map ``name`` (matplotlib's; read-only)."""
    if name not in COLOUR_TABLES:
        raise ValueError(f"unknown colour map {name!r}; choose one of {sorted(COLOUR_TABLES)}")
    return _table(name)


def colour_entries(positions: np.ndarray) -> np.ndarray:
    """``(H, W)`` colour-scale positions → ``(H, W)`` uint8 entries of a 256-entry table: ``t`` (clipped to ``[0, 1]``) is ``round(255 t)``."""
    t = np.clip(np.asarray(positions, dtype=np.float64), 0.0, 1.0)
    return np.rint(t * 255).astype(np.uint8)


def scale_entries(values: np.ndarray, spec: MapSpec, num_classes: int, band_pixels: int = BAND_PIXELS) -> np.ndarray:
    """Values of map ``spec`` → uint8 entries of its colour table: :func:`colour_entries` of :meth:`MapSpec.to_display`.

    Computed in bands of rows of about ``band_pixels`` pixels, so the float64 temporaries of the scale are a band's,
    not the image's (a 12-megapixel map would need several 96 MB ones); the entries are those of the whole image at once.
    """
    values = np.asarray(values)
    if values.ndim < 2:
        return colour_entries(spec.to_display(values, num_classes))
    out = np.empty(values.shape, dtype=np.uint8)
    rows = max(1, band_pixels // max(1, values[0].size))
    for top in range(0, values.shape[0], rows):
        out[top : top + rows] = colour_entries(spec.to_display(values[top : top + rows], num_classes))
    return out


def render_positions(positions: np.ndarray, cmap: str) -> np.ndarray:
    """``(H, W)`` colour-scale positions → ``(H, W, 3)`` uint8: position ``t`` is entry :func:`colour_entries` of the table."""
    rgb: np.ndarray = colour_lut(cmap)[colour_entries(positions)]
    return rgb


def render_scalar(values: np.ndarray, spec: MapSpec, num_classes: int) -> np.ndarray:
    """``(H, W)`` values of map ``spec`` → ``(H, W, 3)`` uint8 on its fixed scale (:meth:`MapSpec.to_display`) and colour map."""
    rgb: np.ndarray = colour_lut(spec.colourmap)[scale_entries(values, spec, num_classes)]
    return rgb


def render_labels(labels: np.ndarray, colours: list[str]) -> np.ndarray:
    """``(H, W)`` class indices → ``(H, W, 3)`` uint8 in class colours."""
    palette = np.array([_hex(c) for c in colours], dtype=np.uint8)
    return palette[np.asarray(labels, dtype=np.intp)]


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode ``(H, W, 3)`` uint8 as PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def indexed_png_bytes(entries: np.ndarray, palette: np.ndarray) -> bytes:
    """Encode ``(H, W)`` uint8 entries of ``palette`` (``(K, 3)`` uint8, ``K <= 256``) as an indexed (palette) PNG.

    It decodes to ``palette[entries]``, the very pixels :func:`png_bytes` of that RGB image holds, in about half the
    bytes (one byte a pixel before compression instead of three); ``PIL.Image.open(...).convert("RGB")`` gives the colours,
    ``numpy.asarray(PIL.Image.open(...))`` the entries.
    """
    if palette.ndim != 2 or palette.shape[1] != 3 or not 1 <= palette.shape[0] <= 256:
        raise ValueError(f"a palette is (K, 3) with 1 <= K <= 256 colours, got shape {palette.shape}")
    image = Image.fromarray(np.ascontiguousarray(entries, dtype=np.uint8))
    image.putpalette(np.ascontiguousarray(palette, dtype=np.uint8).tobytes())
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def indexed_map_images(analysis: Analysis, colours: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The images of :func:`map_images` as ``(entries, palette)``: the labels with the class colours (at most 256 classes),
    every map's :func:`scale_entries` with its 256-entry colour table."""
    if len(colours) > 256:
        raise ValueError(f"an indexed image holds at most 256 colours; this model has {len(colours)} classes")
    images = {"prediction": (np.asarray(analysis.prediction, dtype=np.uint8), np.array([_hex(c) for c in colours], dtype=np.uint8))}
    for spec in MAPS:
        images[spec.name] = (scale_entries(analysis.maps[spec.name], spec, analysis.num_classes), colour_lut(spec.colourmap))
    return images


def map_images(analysis: Analysis, colours: list[str]) -> dict[str, np.ndarray]:
    """Colour ``(H, W, 3)`` uint8 renderings: the prediction in class ``colours`` and every map on its fixed scale."""
    images = {"prediction": render_labels(analysis.prediction, colours)}
    for spec in MAPS:
        images[spec.name] = render_scalar(analysis.maps[spec.name], spec, analysis.num_classes)
    return images


def error_legend() -> list[dict[str, str]]:
    """Name and ``#rrggbb`` colour of each error-map code (0 correct, 1 wrong, 2 not scored)."""
    return [{"name": name, "colour": colour} for name, colour in zip(ERROR_NAMES, ERROR_COLOURS, strict=True)]


SET_NAMES = ("no class (abstains)", "one class", "two classes", "three or more")
SET_COLOURS = ("#3b3b3b", "#f4f4f4", "#f0a030", "#d02f2f")


def set_legend() -> list[dict[str, str]]:
    """Name and ``#rrggbb`` colour of the set-size panel's entries: size 0, 1, 2, and 3 or more (the last colour)."""
    return [{"name": name, "colour": colour} for name, colour in zip(SET_NAMES, SET_COLOURS, strict=True)]


def render_errors(codes: np.ndarray) -> np.ndarray:
    """``(H, W)`` error codes → ``(H, W, 3)`` uint8 in the :data:`ERROR_COLOURS`."""
    return render_labels(codes, list(ERROR_COLOURS))
