"""The page with two models served, in headless Chromium: the model selector re-runs the image with the chosen model (its
classes, colour scales and default samples), and "compare with" draws the second model's panels in a row under the first."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from webutil import LiveServer, drawn, open_page, random_png, served_png

pytestmark = pytest.mark.browser

SECOND_CLASSES = ["sky", "road", "car", "person"]
PANEL_MAPS = ["confidence", "entropy", "variance", "mutual_information"]
READY = "() => document.body.dataset.state === 'ready' && document.querySelectorAll('#panels .view canvas[data-drawn=\"1\"]').length === 6"
OTHER_READY = "() => document.querySelector('#panels-other').dataset.state === 'ready' && !document.querySelector('#panels-other').hidden"
RUN_BY = """([model, samples]) => {
  const text = document.querySelector('#run-info').textContent;
  return text.startsWith(`model ${model} · `) && text.includes(` ${samples} MC samples`);
}"""


@pytest.fixture
def pair_page(browser: Any, two_model_server: LiveServer) -> Iterator[Any]:
    yield from open_page(browser, two_model_server.url)


def upload(page: Any, name: str, data: bytes) -> None:
    page.set_input_files("#file-input", [{"name": name, "mimeType": "image/png", "buffer": data}])


def test_choosing_the_second_model_reanalyses_with_its_classes_scales_and_samples(pair_page: Any) -> None:
    page = pair_page
    assert page.locator("#model option").all_inner_texts() == ["tiny", "second"]
    assert page.input_value("#samples") == "20", "the default model's default"
    upload(page, "scene.png", random_png(40, 56, seed=61))
    page.wait_for_function(READY, timeout=60_000)
    assert page.evaluate(RUN_BY, ["tiny", 20])
    assert page.evaluate("Number([...document.querySelectorAll('#panel-entropy .ticks span')].at(-1).dataset.value)") == pytest.approx(math.log(3))

    page.select_option("#model", "second")
    assert page.input_value("#samples") == "6", "the untouched field moves to the new model's default"
    page.wait_for_function(RUN_BY, arg=["second", 6], timeout=60_000)
    page.wait_for_function(READY, timeout=60_000)
    assert page.inner_text("#model-name") == "second"
    assert page.locator("#class-legend li").all_inner_texts() == SECOND_CLASSES
    assert page.locator("#panel-prediction .legend > span").all_inner_texts() == SECOND_CLASSES
    swatch = page.evaluate("getComputedStyle(document.querySelector('#class-legend .swatch')).backgroundColor")
    assert swatch == "rgb(0, 0, 255)", "the legend's colours are the second model's"
    assert page.evaluate("Number([...document.querySelectorAll('#panel-entropy .ticks span')].at(-1).dataset.value)") == pytest.approx(math.log(4))
    assert page.get_attribute("#panel-confidence .colourbar", "title").endswith("from 0.25 to 1")
    assert page.is_hidden("#panels-other") and page.is_visible("#row-label") and page.inner_text("#row-label") == "Model second"

    page.fill("#samples", "2")
    page.select_option("#model", "tiny")
    assert page.input_value("#samples") == "2", "a value the user typed stays"
    page.wait_for_function(RUN_BY, arg=["tiny", 2], timeout=60_000)
    assert page.locator("#class-legend li").all_inner_texts() == ["bg", "a", "b"]


def test_compare_draws_the_second_models_maps_in_a_row_under_the_first(pair_page: Any, two_model_server: LiveServer) -> None:
    page, url = pair_page, two_model_server.url
    image = random_png(36, 48, seed=62)
    page.fill("#samples", "3")
    page.fill("#seed", "5")
    page.locator("#opacity").fill("1")
    upload(page, "scene.png", image)
    page.wait_for_function(READY, timeout=60_000)
    page.select_option("#compare-model", "second")
    page.wait_for_function(OTHER_READY, timeout=60_000)
    assert (page.inner_text("#row-label"), page.inner_text("#other-label")) == ("Model tiny", "Model second")
    assert page.locator("#panels-other .panel:not([hidden])").count() == 7
    assert page.locator("#panels-other .panel[data-unavailable]").count() == 1 and page.is_visible("#other-panel-feature_distance .unavailable-note")

    for name in PANEL_MAPS:
        first, second = page.locator(f"#panel-{name}").bounding_box(), page.locator(f"#other-panel-{name}").bounding_box()
        assert (round(first["width"]), round(first["x"])) == (round(second["width"]), round(second["x"])), "the same panel, the same size and column"
        assert second["y"] > first["y"] + first["height"], "under the first row"
    assert page.evaluate("Number([...document.querySelectorAll('#other-panel-entropy .ticks span')].at(-1).dataset.value)") == pytest.approx(math.log(4))
    assert page.evaluate("Number([...document.querySelectorAll('#panel-entropy .ticks span')].at(-1).dataset.value)") == pytest.approx(math.log(3))
    assert page.locator("#other-panel-prediction .legend > span").all_inner_texts() == SECOND_CLASSES

    for model, row in (("tiny", "#panel-"), ("second", "#other-panel-")):
        answer = httpx.post(f"{url}/api/v1/analyze", files={"file": ("scene.png", image)}, data={"samples": "3", "seed": "5", "model": model}, timeout=60)
        body = answer.json()
        assert body["model"] == model
        for m in body["maps"]:
            if m["name"] in PANEL_MAPS:
                np.testing.assert_array_equal(drawn(page, f"{row}{m['name']} canvas"), served_png(url, m["url"]), err_msg=f"{model} {m['name']}")
                shown = page.inner_text(f"{row}{m['name']} .map-mean .mean-value")
                decimals = len(shown.split(".")[1]) if "." in shown else 0
                assert abs(float(shown) - m["mean"]) <= 0.5 * 10**-decimals + 1e-12, (model, m["name"], shown, m["mean"])
        np.testing.assert_array_equal(drawn(page, f"{row}prediction canvas"), served_png(url, body["prediction"]["url"]), err_msg=f"{model} prediction")

    page.select_option("#compare-model", "")
    assert page.is_hidden("#panels-other") and page.is_hidden("#other-label")
