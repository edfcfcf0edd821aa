"""Map PNGs that stand alone: a strip under each map with its name, fixed range, scale and a colour bar; under the
prediction, its classes' names and colours.

Drawn with Pillow's default bitmap font (:func:`PIL.ImageFont.load_default_imagefont`, shipped inside Pillow; 6 pixels
a character, 11 high), so no font file is needed and every pixel is the same on every machine.

The map keeps its pixels and place: the image is the map at rows ``0..H-1``, columns ``0..W-1`` (``H × W`` the analysed
size, or the preview's), with the strip below it and, where the legend needs more width than the map has, a margin to
its right; ``image[:H, :W]`` is the bare map. A map's PNG stays a palette PNG whose palette is the map's 256-entry colour
table, so ``numpy.asarray(PIL.Image.open(p))[:H, :W]`` are still the colour-scale entries; the strip is drawn with
entries 0 (background) and 255 (text) of the same table, and its colour bar, at :data:`RAMP_TOP` rows below the map and
:data:`MARGIN` columns from the left, holds entry ``k`` in column ``MARGIN + k`` (``k = 0 … 255``) for
:data:`RAMP_HEIGHT` rows. The prediction's palette is the class colours (entry ``c`` is class ``c``) plus a black
background and a white text entry; with more than 254 classes it is an RGB PNG.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from app.engine.analysis import Analysis
from app.io.bundle import ModelCard
from app.io.rendering import colour_lut, render_labels, scale_entries
from app.maps.registry import MAPS, MapSpec

__all__ = [
    "LINE",
    "MARGIN",
    "RAMP_HEIGHT",
    "RAMP_TOP",
    "STRIP_HEIGHT",
    "TICKS",
    "legend_pngs",
    "map_with_colour_bar",
    "prediction_with_legend",
]

MARGIN = 8
LINE = 12
RAMP_TOP = 4 + 2 * LINE + 4
RAMP_HEIGHT = 12
TICK = 3
TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
STRIP_HEIGHT = RAMP_TOP + RAMP_HEIGHT + TICK + LINE + 3
SWATCH = 10
PREDICTION_INKS = ((0, 0, 0), (255, 255, 255))  # background, text of the prediction's legend


@cache
def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default_imagefont()


def _text_width(text: str) -> int:
    return int(_font().getbbox(text)[2])


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _canvas(pixels: np.ndarray, width: int, height: int, background: int | tuple[int, int, int]) -> np.ndarray:
    """``pixels`` (``(H, W)`` entries or ``(H, W, 3)`` RGB) at the top left of a ``height × width`` canvas of ``background``."""
    shape = (height, width, *pixels.shape[2:])
    canvas = np.empty(shape, dtype=np.uint8)
    canvas[...] = background
    canvas[: pixels.shape[0], : pixels.shape[1]] = pixels
    return canvas


def _tick_label(value: float) -> str:
    return f"{value:.3g}"


def _range_line(spec: MapSpec, num_classes: int) -> str:
    """``fixed range [0, 1.609] = [0, log 5], square root scale``: the range's formula with this model's ``C``."""
    lo, hi = spec.range(num_classes)
    words = spec.range_text()
    fixed = f"fixed range [{lo:.4g}, {hi:.4g}]" + (f" = {words.replace('C', str(num_classes))}" if "C" in words else "")
    return f"{fixed}, {spec.scale_text()} scale"


def map_with_colour_bar(entries: np.ndarray, spec: MapSpec, num_classes: int, unavailable: bool = False) -> Image.Image:
    """The ``(H, W)`` colour-table entries of map ``spec`` with its strip below: title and unit, fixed range and scale,
    the colour bar and the values at the :data:`TICKS` (positions on the colour scale, so a non-linear scale's values
    are uneven), as a palette image whose palette is the map's colour table.

    Args:
        entries: The map's colour-table entries (:func:`~app.io.rendering.scale_entries`).
        spec: The map.
        num_classes: ``C``, for the map's range.
        unavailable: The model cannot compute the map (it is all zeros): the title says so.
    """
    height, width = entries.shape
    title = f"{spec.title}: not available, all zeros" if unavailable else f"{spec.title} ({spec.unit})"
    lines = (title, _range_line(spec, num_classes))
    ticks = [(MARGIN + round(255 * t), _tick_label(float(spec.from_display(np.array(t), num_classes)))) for t in TICKS]
    needed = max(MARGIN + 256 + _text_width(ticks[-1][1]) // 2 + 1, *(MARGIN + _text_width(line) for line in lines)) + MARGIN
    canvas = _canvas(np.asarray(entries, dtype=np.uint8), max(width, needed), height + STRIP_HEIGHT, 0)
    top = height + RAMP_TOP
    canvas[top : top + RAMP_HEIGHT, MARGIN : MARGIN + 256] = np.arange(256, dtype=np.uint8)
    image = Image.fromarray(canvas, mode="P")
    image.putpalette(colour_lut(spec.colourmap).tobytes())
    draw = ImageDraw.Draw(image)
    for k, line in enumerate(lines):
        draw.text((MARGIN, height + 4 + k * LINE), line, fill=255, font=_font())
    draw.rectangle((MARGIN - 1, top - 1, MARGIN + 256, top + RAMP_HEIGHT), outline=255)
    for x, label in ticks:
        draw.line((x, top + RAMP_HEIGHT, x, top + RAMP_HEIGHT + TICK - 1), fill=255)
        left = min(max(MARGIN, x - _text_width(label) // 2), image.width - MARGIN - _text_width(label))
        draw.text((left, top + RAMP_HEIGHT + TICK), label, fill=255, font=_font())
    return image


def prediction_with_legend(labels: np.ndarray, names: list[str], colours: list[str]) -> Image.Image:
    """The ``(H, W)`` class indices in class colours with a legend below: a swatch and the name of every class, wrapped to
    the image's width; a palette image (entry ``c`` is class ``c``) with at most 254 classes, RGB beyond."""
    height, width = labels.shape
    title = "Prediction: argmax of the MC-mean probabilities"
    items = [SWATCH + 4 + _text_width(name) + 10 for name in names]
    canvas_width = max(width, MARGIN + _text_width(title) + MARGIN, MARGIN + max(items) + MARGIN)
    places, x, row = [], MARGIN, 0
    for item in items:
        if x > MARGIN and x + item > canvas_width - MARGIN:
            x, row = MARGIN, row + 1
        places.append((x, height + 4 + LINE + row * (LINE + 2)))
        x += item
    strip = 4 + LINE + (row + 1) * (LINE + 2) + 4
    palette = len(colours) + len(PREDICTION_INKS) <= 256
    background: int | tuple[int, int, int]
    text: int | tuple[int, int, int]
    if palette:
        background, text = len(colours), len(colours) + 1
        canvas = _canvas(np.asarray(labels, dtype=np.uint8), canvas_width, height + strip, background)
        image = Image.fromarray(canvas, mode="P")
        table = render_labels(np.arange(len(colours)), colours)
        image.putpalette(np.concatenate([table, np.array(PREDICTION_INKS, dtype=np.uint8)]).tobytes())
    else:
        background, text = PREDICTION_INKS
        image = Image.fromarray(_canvas(render_labels(labels, colours), canvas_width, height + strip, background), mode="RGB")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, height + 4), title, fill=text, font=_font())
    for index, (name, (left, top)) in enumerate(zip(names, places, strict=True)):
        fill = index if palette else tuple(int(v) for v in render_labels(np.array(index), colours))
        draw.rectangle((left, top + 1, left + SWATCH - 1, top + SWATCH), fill=fill, outline=text)
        draw.text((left + SWATCH + 4, top), name, fill=text, font=_font())
    return image


def legend_pngs(analysis: Analysis, card: ModelCard) -> dict[str, bytes]:
    """PNG bytes of the prediction with its class legend and of every map with its colour bar (the ``analyze`` files)."""
    names, colours = [c.name for c in card.classes], [c.colour for c in card.classes]
    pngs = {"prediction": _png(prediction_with_legend(analysis.prediction, names, colours))}
    for spec in MAPS:
        entries = scale_entries(analysis.maps[spec.name], spec, analysis.num_classes)
        pngs[spec.name] = _png(map_with_colour_bar(entries, spec, analysis.num_classes, spec.name in analysis.unavailable))
    return pngs
