"""End to end: bytes → Analysis; every map has the input's (post-EXIF) size and stays in its fixed range."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from app.cli import main
from app.io.bundle import Bundle
from app.io.masks import MaskError
from app.io.resize import resize_labels, resize_rgb, working_shape
from app.maps.registry import MAP_NAMES
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.labelled import analyze_labelled


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
    analysis = Analyzer(tiny_bundle).analyze_bytes(make(), AnalysisRequest(samples=3, min_area=1))
    c = 3
    assert analysis.image.shape == (h, w, 3)
    assert (analysis.height, analysis.width) == (h, w)
    assert analysis.prediction.shape == (h, w) and analysis.prediction.dtype == np.int64
    assert set(np.unique(analysis.prediction)) <= {0, 1, 2}
    for name in ("mean_probs", "probs", "class_variance"):
        assert getattr(analysis, name).shape == (c, h, w), name
    assert np.allclose(analysis.mean_probs.sum(0), 1.0, atol=1e-5)
    assert set(analysis.maps) == set(MAP_NAMES)
    expected_ranges = {"confidence": (1 / c, 1.0), "variance": (0.0, 0.25), "feature_distance": (0.0, 1.0)}
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
    analysis = Analyzer(tiny_bundle).analyze_bytes(_exif_jpeg(), AnalysisRequest(samples=0))
    assert analysis.image[5, 10, 0] > 200 and analysis.image[5, 10, 2] < 60
    assert analysis.image[35, 10, 0] < 60


def test_maps_are_the_cropped_maps_of_the_padded_image(tiny_bundle: Bundle) -> None:
    """Deterministic confidence equals softmax of the model on the reflect-padded input, cropped back."""
    rgb = np.random.default_rng(2).integers(0, 256, (33, 45, 3), dtype=np.uint8)
    analysis = Analyzer(tiny_bundle).analyze_image(rgb, AnalysisRequest(samples=0))
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
    plain = Analyzer(tiny_bundle).analyze_image(rgb, AnalysisRequest(samples=2, seed=9))
    calibrated = Analyzer(tiny_bundle).analyze_image(rgb, AnalysisRequest(samples=2, seed=9, calibrated=True))
    assert (plain.seed, plain.samples, plain.temperature, plain.calibrated) == (9, 2, 1.0, False)
    assert (calibrated.temperature, calibrated.calibrated) == (2.0, True)
    assert (calibrated.maps["confidence"] <= plain.maps["confidence"] + 1e-6).all()


def _gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], axis=-1).astype(np.uint8)


def test_working_resolution_downscales_the_long_side(tiny_bundle: Bundle) -> None:
    """600×400 with working size 256 → maps 256×171 (short side 400·256/600 = 170.7, rounded half up); the input's size is reported."""
    tiny_bundle.card.input.working_size = 256
    rgb = _gradient(400, 600)
    analysis = Analyzer(tiny_bundle).analyze_image(rgb, AnalysisRequest(samples=2))
    assert analysis.input_size == (400, 600) and analysis.analysed_size == (171, 256) and analysis.resolution == "working"
    assert analysis.image.shape == (171, 256, 3)
    assert np.array_equal(analysis.image, resize_rgb(rgb, (171, 256)))
    assert analysis.probs.shape == (3, 171, 256) and all(m.shape == (171, 256) for m in analysis.maps.values())
    assert "resize" in analysis.timings
    full = Analyzer(tiny_bundle).analyze_image(rgb, AnalysisRequest(samples=2, resolution="full"))
    assert full.analysed_size == full.input_size == (400, 600) and full.resolution == "full" and full.image is rgb


def test_small_images_and_cards_without_working_size_are_not_resized(tiny_bundle: Bundle) -> None:
    rgb = _gradient(80, 100)
    tiny_bundle.card.input.working_size = 256
    small = Analyzer(tiny_bundle).analyze_image(rgb, AnalysisRequest(samples=0))
    tiny_bundle.card.input.working_size = None
    unset = Analyzer(tiny_bundle).analyze_image(_gradient(300, 20), AnalysisRequest(samples=0))
    assert small.analysed_size == small.input_size == (80, 100) and small.resolution == "full" and small.image is rgb
    assert unset.analysed_size == (300, 20) and unset.resolution == "full"


def test_unknown_resolution_is_refused(tiny_bundle: Bundle) -> None:
    with pytest.raises(ValueError, match="resolution"):
        Analyzer(tiny_bundle).analyze_image(np.zeros((8, 8, 3), np.uint8), AnalysisRequest(resolution="half"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "working", "expected"),
    [((400, 600), 256, (171, 256)), ((600, 400), 256, (256, 171)), ((3000, 4000), 256, (192, 256)), ((1, 5000), 256, (1, 256)), ((256, 100), 256, (256, 100))],
)
def test_working_shape(size: tuple[int, int], working: int, expected: tuple[int, int]) -> None:
    assert working_shape(*size, working) == expected
    assert working_shape(*size, None) == size


def test_labels_are_resized_by_nearest_pixel_centre() -> None:
    labels = np.arange(6 * 4, dtype=np.int64).reshape(6, 4)
    out = resize_labels(labels, (3, 2))
    assert out.dtype == np.int64 and out.tolist() == [[5, 7], [13, 15], [21, 23]]
    assert resize_labels(labels, (6, 4)) is labels


def test_labelled_analysis_checks_the_mask_at_input_size_and_scores_at_analysed_size(tiny_bundle: Bundle) -> None:
    """The mask must have the input's size; it is then resized with the image (nearest neighbour), never blended."""
    tiny_bundle.card.input.working_size = 256
    analyzer = Analyzer(tiny_bundle)
    rgb = _gradient(400, 600)
    mask = np.zeros((400, 600), np.uint8)
    mask[:, 300:] = 2
    mask[:, 299] = 1
    labelled = analyze_labelled(analyzer, _png(rgb), _png(mask), AnalysisRequest(samples=0))
    assert labelled.analysis.analysed_size == labelled.mask.shape == (171, 256)
    assert np.array_equal(labelled.mask, resize_labels(mask.astype(np.int64), (171, 256)))
    assert set(np.unique(labelled.mask)) <= {0, 1, 2} and (labelled.mask[:, :127] == 0).all() and (labelled.mask[:, 129:] == 2).all()
    full = analyze_labelled(analyzer, rgb, mask, AnalysisRequest(samples=0, resolution="full"))
    assert full.mask.shape == full.analysis.analysed_size == (400, 600)
    with pytest.raises(MaskError) as err:
        analyze_labelled(analyzer, rgb, np.zeros((171, 256), np.uint8), mask_name="m.png")
    assert err.value.code == "mask_size_mismatch"


def test_cli_analyses_at_working_resolution_unless_asked_for_full(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, bundle)
    card = json.loads((bundle / "model.json").read_text())
    card["input"] = {"working_size": 64}
    (bundle / "model.json").write_text(json.dumps(card))
    Image.fromarray(_gradient(60, 90)).save(tmp_path / "img.png")
    for flags, size in (([], (43, 64)), (["--full-resolution"], (60, 90))):
        out = tmp_path / f"out{len(flags)}"
        assert main(["analyze", str(tmp_path / "img.png"), "--out", str(out), "--samples", "1", "--model", str(bundle), "--quiet", *flags]) == 0
        with np.load(out / "img" / "maps.npz") as npz:
            assert npz["entropy"].shape == size
