"""Conformal prediction sets through the API, against a real uvicorn server: the answer's set-size PNGs equal
``#{c : p_c >= t}`` of its own mean probabilities, the pixel endpoint lists each level's set, the class-mask PNG is
``p_c >= t``, and the region table carries the share of one-class pixels."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from webutil import LiveServer, assert_error, drawn, open_page, random_png, web_settings

from app.web.encoding import decode_raw
from app.web.schemas.analysis import RawArray

THRESHOLDS = {0.05: 0.3, 0.1: 0.55}
MASK_T = 0.4


@pytest.fixture(scope="module")
def server(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    bundle = tmp_path_factory.mktemp("sets") / "tiny"
    shutil.copytree(tiny_bundle_dir, bundle)
    card = json.loads((bundle / "model.json").read_text())
    card["conformal_sets"] = {
        "method": "test",
        "score": "test",
        "analysis_method": "mc_dropout",
        "samples": 4,
        "calibrated_on": "test images",
        "images": 10,
        "levels": [{"alpha": a, "threshold": t, "calibration_risk": a / 2} for a, t in THRESHOLDS.items()],
        "class_masks": [{"class_name": "a", "alpha": 0.1, "threshold": MASK_T, "images": 7, "calibration_fnr": 0.08}],
    }
    (bundle / "model.json").write_text(json.dumps(card))
    live = LiveServer(web_settings(bundle)).start()
    yield live
    live.stop()


def grey(data_url: str) -> np.ndarray:
    import base64

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_sets_in_the_answer_the_pixel_and_the_mask(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/analyze", files={"file": ("a.png", random_png(40, 56, seed=4))}, data={"samples": "4", "raw": "true"}, timeout=60
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    probs = decode_raw(RawArray.model_validate(answer["mean_probs"]))
    conformal = answer["conformal"]
    assert conformal["default_alpha"] == 0.1 and conformal["approximate"] == ""
    for level in conformal["levels"]:
        sizes = (probs >= THRESHOLDS[level["alpha"]]).sum(axis=0)
        np.testing.assert_array_equal(grey(level["set_size_png"]), sizes)
        assert level["singleton_share"] == pytest.approx((sizes == 1).mean())
    sure = (probs >= THRESHOLDS[0.1]).sum(axis=0) == 1
    labels = probs.argmax(axis=0)
    for region in answer["regions"]:
        if region["kind"] == "class":
            assert region["sure_share"] == pytest.approx(sure[labels == region["class_index"]].mean(), rel=1e-5)
    pixel = httpx.get(f"{server.url}{answer['pixel_url']}", params={"x": 7, "y": 3}, timeout=60).json()
    p = probs[:, 3, 7]
    for alpha, t in THRESHOLDS.items():
        assert pixel["sets"][f"{alpha:g}"] == sorted((k for k in range(3) if p[k] >= t), key=lambda k: -p[k])
    [mask] = conformal["class_masks"]
    assert mask["class_name"] == "a" and mask["share"] == pytest.approx((probs[1] >= MASK_T).mean())
    png = httpx.get(f"{server.url}{mask['url']}", timeout=60)
    assert png.status_code == 200
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png.content))) == 255, probs[1] >= MASK_T)
    missing = httpx.get(f"{server.url}{mask['url'].replace('/a.png', '/b.png')}", timeout=60)
    assert "a at alpha 0.1" in assert_error(missing, 404, "not_found", "name")["message"]


def test_the_page_shows_the_sets_panel_its_levels_and_a_class_mask(server: LiveServer, browser: Any) -> None:
    """The set panel appears with the calibrated levels; its pixels are the sizes' colours; a chosen class mask is drawn in
    the class's colour exactly where the served mask PNG is white, the input elsewhere."""
    image = random_png(40, 56, seed=4)
    for page in open_page(browser, server.url):
        with page.expect_response(lambda r: r.url.endswith("/api/v1/analyze")) as answer:
            page.set_input_files("#file-input", [{"name": "a.png", "mimeType": "image/png", "buffer": image}])
        page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)
        result = answer.value.json()
        assert page.is_visible("#panel-sets")
        assert page.eval_on_selector_all("#sets-level option", "els => els.map(e => e.value)") == ["0.05", "0.1"]
        sizes = grey(next(level["set_size_png"] for level in result["conformal"]["levels"] if level["alpha"] == 0.1))
        shown = drawn(page, "#panel-sets canvas")
        colours = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in ("#3b3b3b", "#f4f4f4", "#f0a030", "#d02f2f")}
        assert {tuple(p) for p in shown.reshape(-1, 3)} <= colours
        np.testing.assert_array_equal(np.all(shown == (0xF4, 0xF4, 0xF4), axis=-1), sizes == 1)
        page.select_option("#sets-mask", "a")
        page.wait_for_function("() => !document.querySelector('#sets-summary').textContent.startsWith('t =')", timeout=30_000)
        page.wait_for_timeout(300)
        inside = np.asarray(Image.open(io.BytesIO(httpx.get(f"{server.url}{result['conformal']['class_masks'][0]['url']}", timeout=60).content))) == 255
        overlay, plain = drawn(page, "#panel-sets canvas").astype(int), drawn(page, "#panel-input canvas").astype(int)
        assert inside.any() and (~inside).any()
        np.testing.assert_array_equal(overlay[~inside], plain[~inside])
        assert np.all(np.any(overlay[inside] != plain[inside], axis=-1) | np.all(plain[inside] == (255, 0, 0), axis=-1))
        assert "a mask: p ≥ 0.400" in page.inner_text("#sets-summary")
