"""End to end: bytes → Analysis; every map has the input's (post-EXIF) size and stays in its fixed range."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from app.io.bundle import Bundle
from app.maps.registry import MAP_NAMES
from app.workflows.analyzer import Analyzer


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _sixteen_bit_png() -> bytes:
    values = np.random.default_rng(1).integers(0, 65536, (21, 13), dtype=np.uint16)
    buf = io.BytesIO()
    Image.frombytes("I;16", (13, 21), values.astype("<u2").tobytes()).save(buf, "PNG")
    return buf.getvalue()


def _exif_jpeg() -> bytes:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


CASES = {
    "1x1": (lambda: _png(np.array([[[200, 10, 30]]], np.uint8)), (1, 1)),
    "33x97": (lambda: _png(np.random.default_rng(0).integers(0, 256, (33, 97, 3), dtype=np.uint8)), (33, 97)),
    "16bit": (_sixteen_bit_png, (21, 13)),
    "exif": (_exif_jpeg, (40, 20)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_map_has_input_size_and_stays_in_range(tiny_bundle: Bundle, case: str) -> None:
    """Maps, prediction and probabilities are cropped to the decoded size; values respect the fixed ranges."""
    make, (h, w) = CASES[case]
    analysis = Analyzer(tiny_bundle).analyze_bytes(make(), samples=3, min_area=1)
    c = 3
    assert analysis.image.shape == (h, w, 3)
    assert (analysis.height, analysis.width) == (h, w)
    assert analysis.prediction.shape == (h, w) and analysis.prediction.dtype == np.int64
    assert set(np.unique(analysis.prediction)) <= {0, 1, 2}
    for name in ("mean_probs", "probs", "class_variance"):
        assert getattr(analysis, name).shape == (c, h, w), name
    assert np.allclose(analysis.mean_probs.sum(0), 1.0, atol=1e-5)
    assert set(analysis.maps) == set(MAP_NAMES)
    expected_ranges = {"confidence": (1 / c, 1.0), "variance": (0.0, 0.25)}
    for name in MAP_NAMES:
        values = analysis.maps[name]
        lo, hi = analysis.ranges[name]
        assert (lo, hi) == pytest.approx(expected_ranges.get(name, (0.0, math.log(c))))
        assert values.shape == (h, w) and values.dtype == np.float32, name
        assert np.isfinite(values).all(), name
        assert values.min() >= lo - 1e-6 and values.max() <= hi + 1e-6, name
    assert analysis.samples == 3
    assert sum(r.pixels for r in analysis.regions if r.kind == "class") == h * w


def test_exif_image_is_analysed_upright(tiny_bundle: Bundle) -> None:
    """The analysed image is the EXIF-rotated one: red on top after orientation 6."""
    analysis = Analyzer(tiny_bundle).analyze_bytes(_exif_jpeg(), samples=0)
    assert analysis.image[5, 10, 0] > 200 and analysis.image[5, 10, 2] < 60
    assert analysis.image[35, 10, 0] < 60


def test_maps_are_the_cropped_maps_of_the_padded_image(tiny_bundle: Bundle) -> None:
    """Deterministic confidence equals softmax of the model on the reflect-padded input, cropped back."""
    rgb = np.random.default_rng(2).integers(0, 256, (33, 45, 3), dtype=np.uint8)
    analysis = Analyzer(tiny_bundle).analyze_image(rgb, samples=0)
    norm = tiny_bundle.card.normalization
    x = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - torch.tensor(norm.mean).view(3, 1, 1)) / torch.tensor(norm.std).view(3, 1, 1)
    padded = F.pad(x[None], (0, 48 - 45, 0, 40 - 33), mode="reflect")
    with torch.no_grad():
        probs = torch.softmax(tiny_bundle.net(padded), 1)[0, :, :33, :45]
    assert np.allclose(analysis.probs, probs.numpy(), atol=1e-5)
    assert np.allclose(analysis.maps["confidence"], probs.amax(0).numpy(), atol=1e-5)
    assert np.array_equal(analysis.prediction, probs.argmax(0).numpy())


def test_seed_and_temperature_are_reported(tiny_bundle: Bundle) -> None:
    """Seed, samples and temperature (1 unless calibrated) are echoed in the analysis."""
    tiny_bundle.card.temperature = 2.0
    rgb = np.zeros((8, 8, 3), np.uint8)
    plain = Analyzer(tiny_bundle).analyze_image(rgb, samples=2, seed=9)
    calibrated = Analyzer(tiny_bundle).analyze_image(rgb, samples=2, seed=9, calibrated=True)
    assert (plain.seed, plain.samples, plain.temperature, plain.calibrated) == (9, 2, 1.0, False)
    assert (calibrated.temperature, calibrated.calibrated) == (2.0, True)
    assert (calibrated.maps["confidence"] <= plain.maps["confidence"] + 1e-6).all()
