"""The one labelled-analysis path: bytes or arrays in, the same analysis and mask out; bad masks refused before inference."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from app.io.bundle import Bundle
from app.io.masks import MaskError
from app.metrics.pixels import NOT_SCORED, error_codes, scored_pixels
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.labelled import analyze_labelled


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_bytes_and_arrays_give_the_same_result(tiny_bundle: Bundle) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (24, 40), dtype=np.uint8)
    analyzer = Analyzer(tiny_bundle)
    from_bytes = analyze_labelled(analyzer, _png(rgb), _png(mask), AnalysisRequest(samples=3, seed=5))
    from_arrays = analyze_labelled(analyzer, rgb, mask, AnalysisRequest(samples=3, seed=5))
    assert np.array_equal(from_bytes.mask, from_arrays.mask) and from_bytes.mask.dtype == np.int64
    for name, values in from_bytes.analysis.maps.items():
        np.testing.assert_array_equal(values, from_arrays.analysis.maps[name])


@pytest.mark.parametrize("mask", [np.zeros((24, 41), np.uint8), np.zeros((24, 40, 3), np.uint8)])
def test_a_mismatched_mask_is_refused_before_inference(tiny_bundle: Bundle, mask: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    analyzer = Analyzer(tiny_bundle)
    calls: list[int] = []
    monkeypatch.setattr(analyzer, "analyze_image", lambda *a, **k: calls.append(1))
    with pytest.raises(MaskError) as err:
        analyze_labelled(analyzer, np.zeros((24, 40, 3), np.uint8), mask, mask_name="m.png")
    assert err.value.message.startswith("m.png:") and not calls


def test_scored_pixels_and_error_codes_share_one_rule() -> None:
    """Labels outside [0, C) and the ignore index are not scored; the error map marks exactly those pixels 2."""
    mask = np.array([[0, 1, 2, 3], [255, 7, 1, 0]])
    pred = np.array([[0, 2, 2, 0], [1, 1, 1, 1]])
    scored = scored_pixels(torch.from_numpy(mask), 3, 255).numpy()
    assert scored.tolist() == [[True, True, True, False], [False, False, True, True]]
    codes = error_codes(pred, mask, 3, 255)
    assert codes.tolist() == [[0, 1, 0, 2], [2, 2, 0, 1]]
    assert np.array_equal(codes == NOT_SCORED, ~scored)
    assert error_codes(pred, mask, 3, None)[1, 0] == NOT_SCORED
