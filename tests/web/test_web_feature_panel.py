"""The feature-distance panel in headless Chromium: the shipped default model (which has a fitted feature density) draws
it after mutual information with its image mean; a model without a density shows a note there instead of an all-zero
map, in its own row and in a compared model's row."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from webutil import LiveServer, open_page, web_settings

from app.io.synthetic import make_scene
from app.web.encoding import decode_raw
from app.web.schemas.analysis import AnalyzeResponse

pytestmark = pytest.mark.browser

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default"
PANEL = "#panel-feature_distance"
OTHER = "#other-panel-feature_distance"
DRAWN = "() => [...document.querySelectorAll('#panels .view canvas[data-drawn=\"1\"]')].map((c) => c.closest('.panel').dataset.panel)"
RUN_BY = "(model) => document.body.dataset.state === 'ready' && document.querySelector('#run-info').textContent.startsWith(`model ${model} · `)"
OTHER_READY = "(m) => { const row = document.querySelector('#panels-other'); return !row.hidden && row.dataset.state === 'ready' && row.dataset.model === m; }"
CANVAS_RGB = """(selector) => {
  const c = document.querySelector(selector);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  return {height: c.height, width: c.width, rgb: Array.from(d.filter((_, i) => i % 4 !== 3))};
}"""


@pytest.fixture(scope="module")
def mixed_server(tiny_bundle_dir: Path) -> Iterator[LiveServer]:
    """The default model (fitted density, served first) and the tiny bundle (none)."""
    server = LiveServer(web_settings(DEFAULT_BUNDLE, models=[str(DEFAULT_BUNDLE), str(tiny_bundle_dir)])).start()
    yield server
    server.stop()


@pytest.fixture
def mixed_page(browser: Any, mixed_server: LiveServer) -> Iterator[Any]:
    yield from open_page(browser, mixed_server.url)


def scene_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(make_scene("test", 5, size=128).image).save(buf, format="PNG")
    return buf.getvalue()


def drawn(page: Any, selector: str) -> np.ndarray:
    canvas = page.evaluate(CANVAS_RGB, selector)
    return np.array(canvas["rgb"], dtype=np.uint8).reshape(canvas["height"], canvas["width"], 3)


def served_png(url: str, path: str) -> np.ndarray:
    response = httpx.get(f"{url}{path}", timeout=60)
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def assert_note(page: Any, panel: str) -> None:
    """The panel stands in the row with its title and a note, and shows no map, mean or colour bar."""
    assert page.get_attribute(panel, "data-unavailable") == ""
    assert page.is_visible(panel) and page.inner_text(f"{panel} h2") == "Feature-space distance"
    assert page.is_visible(f"{panel} .unavailable-note")
    note = "This model has no fitted feature density, so it has no feature-distance map: see seg-uncertainty fit-density --help"
    assert page.inner_text(f"{panel} .unavailable-note") == note
    assert page.inner_text(f"{panel} .unavailable-note code") == "seg-uncertainty fit-density --help"
    for part in (".view", ".map-mean", ".scale"):
        assert page.is_hidden(f"{panel} {part}"), part
    assert page.get_attribute(f"{panel} canvas", "data-drawn") is None


def test_the_default_models_panel_is_its_map_and_the_tiny_models_a_note(mixed_page: Any, mixed_server: LiveServer) -> None:
    page, url = mixed_page, mixed_server.url
    models = httpx.get(f"{url}/api/v1/models", timeout=30).json()["models"]
    assert [(m["name"], m["feature_density"]) for m in models] == [("default", True), ("tiny", False)]
    order = page.evaluate("[...document.querySelectorAll('#panels > .panel')].map((p) => p.dataset.panel)")
    assert order == ["input", "prediction", "confidence", "entropy", "variance", "mutual_information", "feature_distance", "error"]
    assert page.get_attribute(PANEL, "data-unavailable") is None and page.is_hidden(f"{PANEL} .unavailable-note")

    image = scene_png()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/analyze")) as answer:
        page.set_input_files("#file-input", [{"name": "scene.png", "mimeType": "image/png", "buffer": image}])
    page.wait_for_function(RUN_BY, arg="default", timeout=120_000)
    assert page.evaluate(DRAWN) == order[:-1]
    compact = {m["name"]: m for m in answer.value.json()["maps"]}
    served = served_png(url, compact["feature_distance"]["url"])
    np.testing.assert_array_equal(drawn(page, f"{PANEL} canvas"), served, err_msg="the page's colours are the served PNG's")
    assert len(np.unique(served.reshape(-1, 3), axis=0)) > 32, "a map, not one colour"

    raw = AnalyzeResponse.model_validate(
        httpx.post(f"{url}/api/v1/analyze", files={"file": ("scene.png", image)}, data={"samples": "0", "raw": "true"}, timeout=120).json()
    )
    values = decode_raw(next(m.values for m in raw.maps if m.name == "feature_distance" and m.values is not None)).astype(np.float64)
    assert values.shape == (128, 128)
    assert page.inner_text(f"{PANEL} .map-mean") == f"image mean {values.mean():#.3g} (exact)", "the image-level score"
    assert page.get_attribute(f"{PANEL} .colourbar", "title") == "fixed power scale (exponent 4) from 0 to 1"

    page.select_option("#compare-model", "tiny")
    page.wait_for_function(OTHER_READY, arg="tiny", timeout=120_000)
    assert_note(page, OTHER)
    assert page.get_attribute(PANEL, "data-unavailable") is None and page.is_visible(f"{PANEL} .view"), "the first row keeps its map"
    first, second = page.locator(PANEL).bounding_box(), page.locator(OTHER).bounding_box()
    assert (round(first["x"]), round(first["width"])) == (round(second["x"]), round(second["width"])), "the same column"
    assert page.locator("#panels-other .panel:not([hidden])").count() == 7

    page.select_option("#model", "tiny")
    page.wait_for_function(RUN_BY, arg="tiny", timeout=120_000)
    assert_note(page, PANEL)
    assert page.evaluate(DRAWN) == order[:-2], "every other panel is drawn"

    page.select_option("#compare-model", "default")
    page.wait_for_function(OTHER_READY, arg="default", timeout=120_000)
    assert page.get_attribute(OTHER, "data-unavailable") is None and page.is_hidden(f"{OTHER} .unavailable-note")
    np.testing.assert_array_equal(drawn(page, f"{OTHER} canvas"), served, err_msg="the compared row draws the default model's map")
    assert page.inner_text(f"{OTHER} .map-mean") == f"image mean {values.mean():#.3g} (exact)"
