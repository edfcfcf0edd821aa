"""The page's controls in headless Chromium: automatic re-runs, rejected values, the calibrated note, resolution,
the OOD verdict, natural region order with "show all", and touch."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from webutil import WORKING_SIZE, LiveServer, open_page, random_png

pytestmark = pytest.mark.browser

DRAWN = "() => document.querySelectorAll('.view canvas[data-drawn=\"1\"]').length === 6 && document.body.dataset.state === 'ready'"
EXACT = "() => { const r = document.querySelector('#readout'); return r.dataset.exact !== undefined && r.dataset.exact === r.dataset.pixel; }"


def upload(page: Any, name: str, data: bytes) -> None:
    page.set_input_files("#file-input", [{"name": name, "mimeType": "image/png", "buffer": data}])


def test_changes_rerun_and_a_rejected_value_keeps_the_result(page: Any) -> None:
    posts: list[str] = []
    page.on("request", lambda req: posts.append(req.url) if req.method == "POST" else None)
    upload(page, "scene.png", random_png(40, 56, seed=51))
    page.wait_for_function(DRAWN, timeout=60_000)
    assert page.inner_text("#run-info").startswith("4 MC samples")
    assert "maps shown: τ = 1" in page.inner_text("#temperature-note")

    page.fill("#samples", "2")
    page.wait_for_function("() => document.querySelector('#run-info').textContent.startsWith('2 MC samples')", timeout=60_000)
    assert len(posts) == 2, "the change alone re-ran the image"

    page.check("#calibrated")
    assert "maps shown: τ = 1" in page.inner_text("#temperature-note"), "the note describes the maps on screen, not the checkbox"
    page.wait_for_function("() => document.querySelector('#temperature-note').textContent.includes('calibrated')", timeout=60_000)
    page.wait_for_function(DRAWN, timeout=60_000)
    assert "(calibrated)" in page.inner_text("#run-info") and len(posts) == 3

    page.fill("#samples", "100")
    page.wait_for_selector("#error-samples:not([hidden])", timeout=60_000)
    page.wait_for_function("() => document.body.dataset.state === 'ready'")
    assert "samples" in page.inner_text("#error-samples") and "16" in page.inner_text("#error-samples")
    assert page.get_attribute("#samples", "aria-invalid") == "true"
    assert page.evaluate("document.querySelectorAll('.view canvas[data-drawn=\"1\"]').length") == 6, "the previous result stays"
    assert page.inner_text("#run-info").startswith("2 MC samples")
    assert page.is_hidden("#error") and page.get_attribute("#thumbs button", "data-status") == "done"
    assert "previous result" in page.inner_text("#status")
    error_box = page.locator("#error-samples").bounding_box()
    samples_box = page.locator("#samples").bounding_box()
    assert abs(error_box["y"] - samples_box["y"]) < 40 and error_box["x"] < samples_box["x"] + 300, "beside the control"

    page.fill("#samples", "3")
    page.wait_for_function("() => document.querySelector('#run-info').textContent.startsWith('3 MC samples')", timeout=60_000)
    assert page.is_hidden("#error-samples") and page.get_attribute("#samples", "aria-invalid") is None


@pytest.fixture
def working_page(browser: Any, working_server: LiveServer) -> Iterator[Any]:
    yield from open_page(browser, working_server.url)


def test_resolution_verdict_and_region_table(working_page: Any) -> None:
    page = working_page
    assert page.evaluate("import('/static/js/regions.js').then((m) => ['disc #10', 'disc #2', 'disc #1', 'bg (all)', 'disc #11'].sort(m.naturalCompare))") == [
        "bg (all)",
        "disc #1",
        "disc #2",
        "disc #10",
        "disc #11",
    ]
    assert "Tiny random test scenes only." in page.inner_text("#model-domain")

    page.select_option("#resolution", "full")
    upload(page, "noisy.png", random_png(96, 128, seed=52))
    page.wait_for_function(DRAWN, timeout=60_000)
    assert page.inner_text("#input-size") == "analysed at 128×96 (the input's own size)"
    assert page.get_attribute("#ood-verdict", "data-unusual") == "true" and page.is_visible("#ood-verdict")
    assert page.locator("#ood-list li").count() == 4 and "more uncertain than 100 %" in page.inner_text("#ood-list")
    assert page.get_attribute("#ood-list li >> nth=0", "data-percentile") == "100"
    verdict, panels = page.locator("#ood-verdict").bounding_box(), page.locator("#panels").bounding_box()
    assert verdict["y"] < panels["y"], "the verdict comes before the maps"

    rows = int(page.get_attribute("#region-table", "data-rows"))
    assert rows > 12
    assert page.locator("#region-table tbody tr").count() == 10
    shown = [int(t) for t in page.locator("#region-table tbody td:nth-child(3)").all_inner_texts()]
    assert page.inner_text("#regions-more") == f"Show all {rows} regions"
    page.click("#regions-more")
    assert page.locator("#region-table tbody tr").count() == rows
    every = sorted((int(t) for t in page.locator("#region-table tbody td:nth-child(3)").all_inner_texts()), reverse=True)
    assert sorted(shown, reverse=True) == every[:10], "the folded table shows the largest rows"
    page.click("#region-table th[data-key='label'] button")
    labels = page.locator("#region-table tbody td:nth-child(1)").all_inner_texts()
    components = [(m.group(1), int(m.group(2))) for label in labels if (m := re.fullmatch(r"(.+) #(\d+)", label))]
    for name in {c for c, _ in components}:
        numbers = [n for c, n in components if c == name]
        assert numbers == sorted(numbers), f"{name}: {numbers} (natural order: #2 before #10)"
    assert max(n for _, n in components) >= 10
    page.click("#regions-more")
    assert page.locator("#region-table tbody tr").count() == 10

    page.select_option("#resolution", "working")
    page.wait_for_function(f"() => document.querySelector('#input-size').textContent.startsWith('analysed at {WORKING_SIZE}×')", timeout=60_000)
    page.wait_for_function(DRAWN, timeout=60_000)
    assert page.inner_text("#input-size") == f"analysed at {WORKING_SIZE}×24 (input 128×96)"
    assert page.evaluate("document.querySelector('#panel-entropy canvas').width") == WORKING_SIZE


def test_tapping_a_panel_moves_the_crosshair_and_the_readout(browser: Any, base_url: str) -> None:
    for page in open_page(browser, base_url, viewport={"width": 420, "height": 860}, has_touch=True, is_mobile=True):
        upload(page, "scene.png", random_png(40, 56, seed=53))
        page.wait_for_function(DRAWN, timeout=60_000)
        readings = []
        for fx, fy in ((0.2, 0.3), (0.8, 0.75)):
            view = page.locator("#panel-confidence .view")
            view.scroll_into_view_if_needed()
            box = view.bounding_box()
            view.tap(position={"x": fx * box["width"], "y": fy * box["height"]})
            page.wait_for_function(EXACT, timeout=30_000)
            text = page.inner_text("#readout-pixel")
            pixel = re.match(r"x (\d+), y (\d+)", text)
            assert pixel is not None, text
            x, y = (int(v) for v in pixel.groups())
            assert abs(x - fx * 56) <= 1 and abs(y - fy * 40) <= 1
            assert page.locator("#readout-top li").count() == 3
            readings.append((x, y, page.evaluate("document.querySelector('#panel-input .cross-v').style.left")))
        assert readings[0] != readings[1] and readings[0][2] != readings[1][2]
        readout = page.locator("#readout").bounding_box()
        assert readout["y"] > 0 and abs(readout["y"] + readout["height"] - 860) <= 1, "pinned to the bottom of the screen"


def test_an_upload_while_the_model_warms_up_is_sent_again_once_it_is_ready(browser: Any, base_url: str) -> None:
    answers: list[int] = []

    def warming_once(route: Any) -> None:
        if not answers:
            answers.append(503)
            body = '{"error": {"code": "not_ready", "message": "model tiny is still warming up; retry in a few seconds", "field": null}}'
            route.fulfill(status=503, headers={"Retry-After": "1", "Content-Type": "application/json"}, body=body)
        else:
            answers.append(200)
            route.continue_()

    for page in open_page(browser, base_url):
        page.route("**/api/v1/analyze*", warming_once)
        upload(page, "scene.png", random_png(40, 56, seed=54))
        page.wait_for_function(DRAWN, timeout=60_000)
        assert answers == [503, 200]
        assert page.is_hidden("#error")
