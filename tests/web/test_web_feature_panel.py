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
from webutil import LiveServer, drawn, open_page, served_png, web_settings

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
EXACT = "() => { const r = document.querySelector('#readout'); return r.dataset.exact !== undefined && r.dataset.exact === r.dataset.pixel; }"
READOUT_CELL = """(name) => { const td = document.querySelector(`#readout td[data-map="${name}"]`);
  return {text: td.textContent, value: td.dataset.value ?? null, title: td.title}; }"""
REGION_COLUMN = """(name) => {
  const column = [...document.querySelectorAll('#region-table thead th')].findIndex((th) => th.dataset.key === name);
  return [...document.querySelectorAll('#region-table tbody tr')].map((tr) => ({
    label: tr.cells[0].textContent, text: tr.cells[column].textContent, title: tr.cells[column].title}));
}"""
UNAVAILABLE = "not available for this model: no fitted feature density"


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


def hover_exact(page: Any) -> tuple[int, int]:
    """Hover a pixel of the confidence panel and wait for its exact values; returns the pixel (x, y)."""
    view = page.locator("#panel-confidence .view")
    box = view.bounding_box()
    view.hover(position={"x": 0.3 * box["width"], "y": 0.6 * box["height"]})
    page.wait_for_function(EXACT, timeout=30_000)
    x, y = (int(v) for v in page.get_attribute("#readout", "data-exact").split(","))
    return x, y


def region_label(region: dict[str, Any]) -> str:
    return f"{region['class_name']} (all)" if region["kind"] == "class" else f"{region['class_name']} #{region['component']}"


def assert_no_feature_distance(page: Any) -> None:
    """The readout and the region table show a dash, not a zero, for the feature distance, also once sorted by it."""
    assert page.evaluate(READOUT_CELL, "feature_distance") == {"text": "—", "value": None, "title": UNAVAILABLE}
    confidence = page.evaluate(READOUT_CELL, "confidence")
    assert confidence["value"] is not None and float(confidence["text"]) == pytest.approx(float(confidence["value"]), abs=5e-5)
    column = page.evaluate(REGION_COLUMN, "feature_distance")
    assert len(column) >= 2 and all((c["text"], c["title"]) == ("—", UNAVAILABLE) for c in column), column
    header = "#region-table th[data-key='feature_distance']"
    for order in ("descending", "ascending"):
        page.click(f"{header} button")
        assert page.get_attribute(header, "aria-sort") == order
        sorted_column = page.evaluate(REGION_COLUMN, "feature_distance")
        assert sorted(c["label"] for c in sorted_column) == sorted(c["label"] for c in column)
        assert {c["text"] for c in sorted_column} == {"—"}


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
    assert order == ["input", "prediction", "confidence", "entropy", "variance", "mutual_information", "feature_distance", "error", "sets"]
    assert page.get_attribute(PANEL, "data-unavailable") is None and page.is_hidden(f"{PANEL} .unavailable-note")

    image = scene_png()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/analyze")) as answer:
        page.set_input_files("#file-input", [{"name": "scene.png", "mimeType": "image/png", "buffer": image}])
    page.wait_for_function(RUN_BY, arg="default", timeout=120_000)
    assert page.evaluate(DRAWN) == [p for p in order if p != "error"]
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

    x, y = hover_exact(page)
    cell = page.evaluate(READOUT_CELL, "feature_distance")
    assert cell["title"] == "" and float(cell["value"]) == pytest.approx(values[y, x], abs=1e-6)
    assert float(cell["text"]) == pytest.approx(values[y, x], abs=5e-5) and values[y, x] > 1e-3, "a number, to four decimals"
    regions = answer.value.json()["regions"]
    column = page.evaluate(REGION_COLUMN, "feature_distance")
    shown = {c["label"]: c["text"] for c in column}
    assert len(shown) == len(column) >= 2 and all(r["errors"]["feature_distance"] == 0 for r in regions), "exact: the deterministic pass"
    assert shown == {region_label(r): f"{r['means']['feature_distance']:.4f}" for r in regions if region_label(r) in shown}
    assert any(text != "0.0000" for text in shown.values())

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
    page.wait_for_function(EXACT, timeout=30_000)
    assert page.get_attribute("#readout", "data-exact") == f"{x},{y}", "the readout stays on the hovered pixel"
    assert_no_feature_distance(page)
    assert page.evaluate(DRAWN) == [p for p in order if p not in ("feature_distance", "error", "sets")], "every other panel is drawn"

    page.select_option("#compare-model", "default")
    page.wait_for_function(OTHER_READY, arg="default", timeout=120_000)
    assert page.get_attribute(OTHER, "data-unavailable") is None and page.is_hidden(f"{OTHER} .unavailable-note")
    np.testing.assert_array_equal(drawn(page, f"{OTHER} canvas"), served, err_msg="the compared row draws the default model's map")
    assert page.inner_text(f"{OTHER} .map-mean") == f"image mean {values.mean():#.3g} (exact)"


def test_the_api_lists_the_maps_a_model_cannot_compute(mixed_server: LiveServer) -> None:
    names = [m["name"] for m in httpx.get(f"{mixed_server.url}/api/v1/models", timeout=30).json()["models"]]
    seen = {}
    for name in names:
        files = {"file": ("scene.png", scene_png(), "image/png")}
        body = httpx.post(f"{mixed_server.url}/api/v1/analyze", files=files, data={"model": name, "samples": "2"}, timeout=120).json()
        zeros = not np.any(decode_raw_map(mixed_server, body["analysis_id"]))
        seen[name] = (body["unavailable"], zeros)
    assert seen[names[0]] == ([], False) and seen[names[1]] == (["feature_distance"], True), seen


def decode_raw_map(server: LiveServer, analysis_id: str) -> np.ndarray:
    """The exact feature-distance map of a kept analysis, from its NPZ."""
    npz = np.load(io.BytesIO(httpx.get(f"{server.url}/api/v1/analyses/{analysis_id}/maps.npz", timeout=30).content))
    return npz["feature_distance"]
