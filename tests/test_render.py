"""Fixed colour scales: values map to the same colour whatever else is in the image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.io.rendering import ERROR_COLOURS, colour_lut, error_legend, png_bytes, render_errors, render_labels, render_scalar
from app.maps.registry import MAPS

VIRIDIS_ENDS = ((0x44, 0x01, 0x54), (0xFD, 0xE7, 0x25))
INFERNO_ENDS = ((0x00, 0x00, 0x04), (0xFC, 0xFF, 0xA4))


@pytest.mark.parametrize(("cmap", "ends"), [("viridis", VIRIDIS_ENDS), ("inferno", INFERNO_ENDS)])
def test_range_ends_get_first_and_last_colour(cmap: str, ends: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    """lo → the map's first colour, hi → its last; beyond the range is clipped to them."""
    values = np.array([[0.25, 1.0, -5.0, 7.0]])
    out = render_scalar(values, 0.25, 1.0, cmap)
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    assert out[0].tolist() == [list(ends[0]), list(ends[1]), list(ends[0]), list(ends[1])]


def test_lut_has_256_entries_from_first_to_last_anchor() -> None:
    """The LUT has 256 entries from the first to the last anchor, getting brighter along the way (inferno)."""
    lut = colour_lut("inferno")
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert lut[0].tolist() == list(INFERNO_ENDS[0]) and lut[255].tolist() == list(INFERNO_ENDS[1])
    assert lut.astype(int).sum(1)[::51].tolist() == sorted(lut.astype(int).sum(1)[::51].tolist())


def test_same_value_same_colour_regardless_of_neighbours() -> None:
    """A pixel's colour depends on its value only, never on the other pixels (no min-max stretch)."""
    narrow = np.full((4, 4), 0.3)
    narrow[0, 0] = 0.31
    wide = np.linspace(0.0, 0.69, 16).reshape(4, 4)
    wide[1, 1] = 0.3
    a = render_scalar(narrow, 0.0, np.log(2), "inferno")
    b = render_scalar(wide, 0.0, np.log(2), "inferno")
    assert a[1, 1].tolist() == b[1, 1].tolist()
    index = int(np.rint(0.3 / np.log(2) * 255))
    assert a[1, 1].tolist() == colour_lut("inferno")[index].tolist()
    assert len({tuple(p) for p in a.reshape(-1, 3)}) <= 2


def test_nearby_values_step_through_the_lut() -> None:
    """Value lo + k/255 · (hi − lo) is LUT entry k."""
    k = np.arange(256)
    out = render_scalar((k / 255.0 * 0.25)[None, :], 0.0, 0.25, "viridis")
    assert np.array_equal(out[0], colour_lut("viridis"))


def test_empty_range_and_unknown_cmap_rejected() -> None:
    """hi ≤ lo and unknown colour maps are ValueErrors."""
    with pytest.raises(ValueError, match="range"):
        render_scalar(np.zeros((2, 2)), 1.0, 1.0, "viridis")
    with pytest.raises(ValueError, match="unknown colour map"):
        colour_lut("jet")


def test_every_map_has_a_known_colour_map() -> None:
    """Each scalar map renders with an existing colour map."""
    assert {m.name for m in MAPS} == {"confidence", "entropy", "expected_entropy", "mutual_information", "variance"}
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
