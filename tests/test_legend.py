"""``analyze``'s PNGs stand alone: a colour bar with the map's name, fixed range and scale under each map, the class names
and colours under the prediction (issue 25, item 1)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.cli import main
from app.io.legend import (
    LINE,
    MARGIN,
    RAMP_HEIGHT,
    RAMP_TOP,
    STRIP_HEIGHT,
    SWATCH,
    _font,
    legend_pngs,
    map_with_colour_bar,
    prediction_with_legend,
)
from app.io.rendering import colour_lut, render_labels, scale_entries
from app.maps.registry import MAPS, MapSpec, get_map

H, W = 20, 30


def _entries(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W), dtype=np.uint8)


def _text_rows(lines: list[str], width: int, top: int) -> np.ndarray:
    """The rows ``top .. top + len(lines) * LINE`` of a strip with only ``lines`` drawn (entry 255 on 0), as the legend draws them."""
    canvas = Image.new("P", (width, top + len(lines) * LINE), 0)
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(lines):
        draw.text((MARGIN, top + k * LINE), line, fill=255, font=_font())
    return np.asarray(canvas)[top:]


@pytest.mark.parametrize("spec", MAPS, ids=lambda s: s.name)
def test_the_colour_bar_is_the_colour_table_under_the_untouched_map(spec: MapSpec) -> None:
    entries = _entries()
    image = map_with_colour_bar(entries, spec, 5)
    assert image.mode == "P" and image.height == H + STRIP_HEIGHT and image.width >= MARGIN + 256 + MARGIN
    assert (RAMP_TOP, RAMP_HEIGHT, MARGIN) == (32, 12, 8)  # the positions docs/cli.md gives
    pixels, rgb = np.asarray(image), np.asarray(image.convert("RGB"))
    assert np.array_equal(pixels[:H, :W], entries), "the map keeps its pixels at the top left"
    ramp = slice(H + RAMP_TOP, H + RAMP_TOP + RAMP_HEIGHT), slice(MARGIN, MARGIN + 256)
    assert np.array_equal(pixels[ramp], np.broadcast_to(np.arange(256, dtype=np.uint8), (RAMP_HEIGHT, 256)))
    assert np.array_equal(rgb[ramp], np.broadcast_to(colour_lut(spec.colourmap), (RAMP_HEIGHT, 256, 3)))
    assert np.array_equal(np.asarray(image.getpalette(), dtype=np.uint8).reshape(-1, 3)[:256], colour_lut(spec.colourmap))


def test_the_strip_names_the_map_its_range_its_unit_and_its_scale() -> None:
    """The two text lines are exactly these words in Pillow's bitmap font (any other text, or none, fails)."""
    image = map_with_colour_bar(_entries(), get_map("entropy"), 5)
    expected = ["Predictive entropy (nats)", "fixed range [0, 1.609] = [0, log 5], square root scale"]
    drawn = np.asarray(image)[H + 4 : H + 4 + 2 * LINE]
    assert np.array_equal(drawn, _text_rows(expected, image.width, 4))
    variance = map_with_colour_bar(_entries(), get_map("variance"), 3)
    expected = ["MC-dropout variance (probability²)", "fixed range [0, 0.25], cube root scale"]
    assert np.array_equal(np.asarray(variance)[H + 4 : H + 4 + 2 * LINE], _text_rows(expected, variance.width, 4))
    unavailable = map_with_colour_bar(_entries(), get_map("feature_distance"), 3, unavailable=True)
    expected = ["Feature-space distance: not available, all zeros", "fixed range [0, 1], power 4 scale"]
    assert np.array_equal(np.asarray(unavailable)[H + 4 : H + 4 + 2 * LINE], _text_rows(expected, unavailable.width, 4))


def test_the_prediction_lists_every_class_with_its_colour() -> None:
    names, colours = ["background", "disc", "square"], ["#1f1f1f", "#e6194b", "#3cb44b"]
    labels = np.random.default_rng(1).integers(0, 3, (H, W), dtype=np.uint8)
    image = prediction_with_legend(labels, names, colours)
    pixels = np.asarray(image)
    assert image.mode == "P" and image.height > H and np.array_equal(pixels[:H, :W], labels)
    palette = np.asarray(image.getpalette(), dtype=np.uint8).reshape(-1, 3)
    assert np.array_equal(palette[:3], render_labels(np.arange(3), colours))
    strip = pixels[H:]
    for index in range(3):  # each class's swatch: a SWATCH-square block of its entry (inside a 1-pixel outline)
        inside = np.argwhere(strip == index)
        assert len(inside) == (SWATCH - 2) ** 2, names[index]
    assert (strip == 4).sum() > 200, "the names are written (text entry)"
    many = [f"c{k}" for k in range(300)]
    big = prediction_with_legend(np.arange(300).reshape(15, 20) % 300, many, ["#102030"] * 300)
    assert big.mode == "RGB" and np.array_equal(np.asarray(big)[:15, :20], np.full((15, 20, 3), (16, 32, 48)))


def test_analyze_writes_maps_with_colour_bars(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """Through the command: each map's PNG is its bare rendering (from the analysis) with the strip below, the ramp the
    colour table at the documented place; the prediction's PNG has the class legend."""
    image = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    assert main(["analyze", str(image), "--out", str(out), "--samples", "2", "--model", str(tiny_bundle_dir), "--quiet"]) == 0
    info = json.loads((out / "a" / "analysis.json").read_text())
    h, w = info["height"], info["width"]
    for spec in MAPS:
        with Image.open(out / "a" / f"{spec.name}.png") as png:
            assert png.mode == "P" and png.height == h + STRIP_HEIGHT and png.width >= MARGIN + 256 + MARGIN
            rgb = np.asarray(png.convert("RGB"))
        ramp = rgb[h + RAMP_TOP + RAMP_HEIGHT // 2, MARGIN : MARGIN + 256]
        assert np.array_equal(ramp, colour_lut(spec.colourmap)), spec.name
    with Image.open(out / "a" / "prediction.png") as png:
        assert png.height > h + LINE and png.width >= w
    with np.load(out / "a" / "maps.npz") as npz:  # the bare maps, pixel-aligned, are the archive's
        assert npz["entropy"].shape == (h, w)


def test_legend_pngs_keep_the_bare_maps_at_the_top_left(tiny_bundle_dir: Path) -> None:
    """The same PNGs as the bare palette ones (:func:`~app.io.encoding.map_pngs`), each map's entries untouched at the top left."""
    import torch

    from app.io.bundle import load_bundle
    from app.io.encoding import map_pngs
    from app.io.synthetic import make_scene
    from app.request import AnalysisRequest
    from app.workflows.analyzer import Analyzer

    bundle = load_bundle(tiny_bundle_dir, torch.device("cpu"))
    buf = io.BytesIO()
    Image.fromarray(make_scene("test", 0, size=96).image).save(buf, format="PNG")
    analysis = Analyzer(bundle).analyze_bytes(buf.getvalue(), AnalysisRequest(samples=2))
    legend, bare = legend_pngs(analysis, bundle.card), map_pngs(analysis, bundle.card, indexed=True)
    assert set(legend) == set(bare)
    for spec in MAPS:
        with Image.open(io.BytesIO(legend[spec.name])) as png:
            crop = np.asarray(png)[: analysis.height, : analysis.width]
        assert np.array_equal(crop, scale_entries(analysis.maps[spec.name], spec, analysis.num_classes))
