"""Fixed colour scales: values map to the same colour whatever else is in the image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.io.bundle import Bundle
from app.io.encoding import map_pngs
from app.io.rendering import (
    ERROR_COLOURS,
    colour_entries,
    colour_lut,
    error_legend,
    indexed_png_bytes,
    png_bytes,
    render_errors,
    render_labels,
    render_positions,
    render_scalar,
    scale_entries,
)
from app.maps.registry import MAPS, MapSpec, get_map
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

# Published values: matplotlib's _viridis_data / _inferno_data rounded to 8 bits (as matplotlib.colors.to_hex does).
PUBLISHED = {
    "viridis": {0: (68, 1, 84), 64: (59, 82, 139), 128: (33, 145, 140), 192: (94, 201, 98), 255: (253, 231, 37)},
    "inferno": {0: (0, 0, 4), 64: (87, 16, 110), 128: (188, 55, 84), 192: (249, 142, 9), 255: (252, 255, 164)},
}


@pytest.mark.parametrize("cmap", sorted(PUBLISHED))
def test_tables_are_matplotlibs_exact_values(cmap: str) -> None:
    """256 entries; sampled entries equal matplotlib's published colours (the old 10-anchor interpolation missed by up to 16/255)."""
    lut = colour_lut(cmap)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    for index, rgb in PUBLISHED[cmap].items():
        assert tuple(int(v) for v in lut[index]) == rgb


@pytest.mark.parametrize("cmap", sorted(PUBLISHED))
def test_tables_get_lighter_along_the_scale(cmap: str) -> None:
    """Relative luminance (linearised sRGB) rises along every 8th entry: a brighter colour is a higher position."""
    srgb = colour_lut(cmap).astype(np.float64) / 255
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    luminance = linear @ np.array([0.2126, 0.7152, 0.0722])
    assert (np.diff(luminance[::8]) > 0).all()


def test_lut_is_read_only() -> None:
    """The cached table cannot be changed by a caller by accident."""
    with pytest.raises(ValueError, match="read-only"):
        colour_lut("viridis")[0, 0] = 1


@pytest.mark.parametrize("spec", MAPS, ids=lambda s: s.name)
def test_value_lands_at_the_powered_position(spec: MapSpec) -> None:
    """Value ``v`` is drawn with entry ``round(255 ((v − lo)/(hi − lo))^p)``, ``p`` the map's fixed display exponent."""
    classes = 5
    lo, hi = spec.range(classes)
    fractions = (0.0, 0.0013, 0.021, 0.13, 0.31, 0.47, 0.88, 1.0)
    values = lo + (hi - lo) * np.array([fractions])
    out = render_scalar(values, spec, classes)
    expected = [round(255 * f**spec.display_power) for f in fractions]
    assert out[0].tolist() == colour_lut(spec.colourmap)[expected].tolist()


def test_range_ends_and_outside_values_get_the_end_colours() -> None:
    """lo → first entry, hi → last; values beyond the range are clipped to them."""
    spec = get_map("mutual_information")
    out = render_scalar(np.array([[0.0, np.log(3), -5.0, 7.0]]), spec, 3)
    lut = colour_lut("inferno")
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    assert out[0].tolist() == [lut[0].tolist(), lut[255].tolist(), lut[0].tolist(), lut[255].tolist()]


@pytest.mark.parametrize("spec", MAPS, ids=lambda s: s.name)
def test_from_display_inverts_to_display(spec: MapSpec) -> None:
    """Analytic: position ``t`` is value ``lo + (hi − lo) t^(1/p)``, and back."""
    lo, hi = spec.range(4)
    t = np.linspace(0.0, 1.0, 11)
    values = spec.from_display(t, 4)
    np.testing.assert_allclose(values, lo + (hi - lo) * t ** (1.0 / spec.display_power), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(spec.to_display(values, 4), t, rtol=1e-12, atol=1e-15)


def test_display_exponents_are_the_documented_ones() -> None:
    """Confidence linear; the entropies square root; MI and variance cube root (chosen on real photos: docs/maps.md, docs/results.md);
    the feature distance, a percentile, to the fourth power (typical pixels dark, the top percent bright)."""
    powers = {m.name: m.display_power for m in MAPS}
    expected = {"confidence": 1.0, "entropy": 0.5, "expected_entropy": 0.5, "mutual_information": 1 / 3, "variance": 1 / 3, "feature_distance": 4.0}
    assert powers == pytest.approx(expected)
    assert get_map("mutual_information").to_display(np.array(np.log(5) / 8), 5) == pytest.approx(0.5)


def test_same_value_same_colour_regardless_of_neighbours() -> None:
    """A pixel's colour depends on its value only, never on the other pixels (no min-max stretch)."""
    spec = get_map("entropy")
    narrow = np.full((4, 4), 0.3)
    narrow[0, 0] = 0.31
    wide = np.linspace(0.0, 0.69, 16).reshape(4, 4)
    wide[1, 1] = 0.3
    a = render_scalar(narrow, spec, 2)
    b = render_scalar(wide, spec, 2)
    assert a[1, 1].tolist() == b[1, 1].tolist()
    index = int(np.rint(np.sqrt(0.3 / np.log(2)) * 255))
    assert a[1, 1].tolist() == colour_lut("inferno")[index].tolist()
    assert len({tuple(p) for p in a.reshape(-1, 3)}) <= 2


def test_positions_step_through_the_lut() -> None:
    """Position k/255 is LUT entry k; positions outside [0, 1] are clipped."""
    k = np.arange(256)
    assert np.array_equal(render_positions((k / 255.0)[None, :], "viridis")[0], colour_lut("viridis"))
    assert render_positions(np.array([[-0.5, 1.5]]), "viridis")[0].tolist() == [[68, 1, 84], [253, 231, 37]]


def test_unknown_cmap_rejected() -> None:
    with pytest.raises(ValueError, match="unknown colour map"):
        colour_lut("jet")


def test_every_map_has_a_known_colour_map() -> None:
    """Each scalar map renders with an existing colour map."""
    assert {m.name for m in MAPS} == {"confidence", "entropy", "expected_entropy", "mutual_information", "variance", "feature_distance"}
    for spec in MAPS:
        assert colour_lut(spec.colourmap).shape == (256, 3)


def test_render_labels_uses_class_colours() -> None:
    """Each label gets its class colour (#rrggbb parsed exactly)."""
    labels = np.array([[0, 1], [2, 1]])
    out = render_labels(labels, ["#000000", "#ff8000", "#12abef"])
    assert out.dtype == np.uint8
    assert out.tolist() == [[[0, 0, 0], [255, 128, 0]], [[0x12, 0xAB, 0xEF], [255, 128, 0]]]


def test_error_map_colours_follow_the_legend() -> None:
    """Codes 0/1/2 render in the legend's colours: dark correct, red wrong, grey not scored."""
    out = render_errors(np.array([[0, 1, 2]], dtype=np.uint8))
    assert out.tolist() == [[[0x20, 0x20, 0x20], [0xE6, 0x19, 0x4B], [0xA0, 0xA0, 0xA0]]]
    assert [e["colour"] for e in error_legend()] == list(ERROR_COLOURS)
    assert [e["name"] for e in error_legend()] == ["correct", "wrong", "not scored"]


def test_png_bytes_round_trip() -> None:
    """PNG encoding is lossless."""
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(rgb)))), rgb)


def test_an_indexed_png_decodes_to_the_palettes_colours() -> None:
    """The palette PNG holds the entries and the table; decoded, it is ``palette[entries]``, the pixels of the RGB PNG."""
    rng = np.random.default_rng(5)
    entries = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    palette = colour_lut("inferno")
    data = indexed_png_bytes(entries, palette)
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "P"
        np.testing.assert_array_equal(np.asarray(img), entries)
        rgb = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(rgb, palette[entries])
    with Image.open(io.BytesIO(png_bytes(palette[entries]))) as img:
        np.testing.assert_array_equal(np.asarray(img), rgb)
    with pytest.raises(ValueError, match="palette"):
        indexed_png_bytes(entries, np.zeros((257, 3), np.uint8))


def test_indexed_map_pngs_are_the_rgb_ones_in_fewer_bytes(tiny_bundle: Bundle) -> None:
    """``analyze``'s palette PNGs decode to exactly the RGB PNGs' pixels (prediction and every map), and take fewer bytes."""
    rgb = np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    analysis = Analyzer(tiny_bundle).analyze_image(rgb, AnalysisRequest(samples=4, seed=1))
    indexed, plain = map_pngs(analysis, tiny_bundle.card, indexed=True), map_pngs(analysis, tiny_bundle.card)
    assert set(indexed) == set(plain) == {"prediction", *(spec.name for spec in MAPS)}
    for name, data in indexed.items():
        with Image.open(io.BytesIO(data)) as img, Image.open(io.BytesIO(plain[name])) as reference:
            assert img.mode == "P" and reference.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(img.convert("RGB")), np.asarray(reference), err_msg=name)
    assert sum(map(len, indexed.values())) < sum(map(len, plain.values()))


@pytest.mark.parametrize("band_pixels", [1, 7, 64, 10**9])
def test_scale_entries_in_bands_are_those_of_the_whole_map(band_pixels: int) -> None:
    """Bands of rows of any height give the entries :func:`colour_entries` of :meth:`MapSpec.to_display` gives at once."""
    rng = np.random.default_rng(3)
    values = (rng.random((23, 9)) * 2.0 - 0.3).astype(np.float32)
    for spec in MAPS:
        whole = colour_entries(spec.to_display(values, 5))
        assert np.array_equal(scale_entries(values, spec, 5, band_pixels), whole), spec.name
