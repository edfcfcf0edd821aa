"""The page in headless Chromium against the live server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from webutil import drawn, random_png, served_png

from app.maps.registry import MAP_NAMES, PANEL_MAPS
from app.web.encoding import decode_raw
from app.web.schemas.analysis import AnalyzeResponse

pytestmark = pytest.mark.browser

PANELS = ["input", "prediction", "confidence", "entropy", "variance", "mutual_information"]  # drawn: the tiny bundle has no feature density

CANVAS_STATS = """(ids) => ids.map((id) => {
  const c = document.querySelector(`#panel-${id} canvas`);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let opaque = 0; const colours = new Set();
  for (let i = 0; i < d.length; i += 4) { if (d[i + 3] > 0) opaque++; colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]); }
  return {id, width: c.width, height: c.height, opaque, pixels: d.length / 4, colours: colours.size};
})"""

READOUT = """() => ({
  pixel: document.querySelector('#readout-pixel').textContent,
  maps: Object.fromEntries([...document.querySelectorAll('td[data-map]')].map(
    (td) => [td.dataset.map, [Number(td.dataset.value), Number(td.dataset.lo), Number(td.dataset.hi),
                              td.dataset.approx === undefined ? null : Number(td.dataset.approx), td.textContent]])),
  top: [...document.querySelectorAll('#readout-top li')].map((li) => [li.dataset.class, Number(li.dataset.p)]),
  crossLeft: [...document.querySelectorAll('.view .cross-v')].map((el) => el.style.left),
  crossTop: [...document.querySelectorAll('.view .cross-h')].map((el) => el.style.top),
})"""


STATE_RECORDER = """() => {
  window.__states = [];
  new MutationObserver(() => window.__states.push(document.body.dataset.state)).observe(document.body, {attributes: true, attributeFilter: ['data-state']});
}"""

EXACT = "() => { const r = document.querySelector('#readout'); return r.dataset.exact !== undefined && r.dataset.exact === r.dataset.pixel; }"

DROP_FILE = """async ([name, bytes]) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/png'}));
  document.querySelector('#dropzone').dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
}"""


def upload(page: Any, files: list[tuple[str, bytes, str]]) -> None:
    page.set_input_files("#file-input", [{"name": n, "mimeType": m, "buffer": b} for n, b, m in files])


def wait_drawn(page: Any) -> None:
    page.wait_for_function(
        f"() => document.querySelectorAll('.view canvas[data-drawn=\"1\"]').length === {len(PANELS)} && document.body.dataset.state === 'ready'", timeout=60_000
    )


def test_analyse_hover_sort_and_errors(page: Any, base_url: str, tmp_path: Path) -> None:
    image = random_png(72, 96, seed=21)
    page.evaluate(STATE_RECORDER)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/analyze")) as answer:
        upload(page, [("scene.png", image, "image/png")])
    compact = answer.value.json()
    assert len(answer.value.body()) <= 6 * 96 * 72
    assert compact["mean_probs"] is None and all(m["values"] is None and m["png"] is None for m in compact["maps"])
    wait_drawn(page)
    assert page.get_attribute("#panels", "aria-busy") == "false"
    states = page.evaluate("window.__states")
    assert states[0] == "busy" and states[-1] == "ready", states

    stats = page.evaluate(CANVAS_STATS, PANELS)
    for s in stats:
        assert (s["width"], s["height"]) == (96, 72), s
        assert s["opaque"] == s["pixels"], s
        assert s["colours"] > 4, s
    boxes = [page.locator(f"#panel-{p} canvas").bounding_box() for p in PANELS]
    assert len({round(b["width"]) for b in boxes}) == 1 and len({round(b["height"]) for b in boxes}) == 1
    assert round(boxes[0]["y"]) == round(boxes[1]["y"]) == round(boxes[2]["y"])

    served = {m["name"]: served_png(base_url, m["url"]) for m in compact["maps"]} | {"prediction": served_png(base_url, compact["prediction"]["url"])}
    for name in PANELS[2:]:
        np.testing.assert_array_equal(drawn(page, f"#panel-{name} canvas"), served[name], err_msg=f"{name}: the page's colours are the PNG's")

    expected = AnalyzeResponse.model_validate(
        httpx.post(f"{base_url}/api/v1/analyze", files={"file": ("scene.png", image)}, data={"samples": "4", "seed": "0", "raw": "true"}, timeout=60).json()
    )
    values = {m.name: decode_raw(m.values) for m in expected.maps if m.values is not None}
    assert expected.mean_probs is not None
    probs = decode_raw(expected.mean_probs)

    readouts = []
    for panel, (fx, fy) in (("confidence", (0.25, 0.3)), ("mutual_information", (0.8, 0.7))):
        view = page.locator(f"#panel-{panel} .view")
        box = view.bounding_box()
        view.hover(position={"x": fx * box["width"], "y": fy * box["height"]})
        page.wait_for_function(EXACT)
        readouts.append(page.evaluate(READOUT))
    first, second = readouts
    assert first["pixel"] != second["pixel"]
    for r in readouts:
        pixel = re.match(r"x (\d+), y (\d+)", r["pixel"])
        assert pixel is not None, r["pixel"]
        x, y = (int(v) for v in pixel.groups())
        assert set(r["maps"]) == set(values)
        for name, (value, lo, hi, approx, text) in r["maps"].items():
            if name == "feature_distance":  # the tiny bundle has none: a dash, not its zeros
                assert not values[name].any() and (text, approx) == ("—", None) and np.isnan(value), (text, value)
                continue
            assert lo - 1e-6 <= value <= hi + 1e-6, (name, value, lo, hi)
            assert value == pytest.approx(float(values[name][y, x]), abs=1e-6)
            if name in PANEL_MAPS:
                assert approx == pytest.approx(value, abs=0.01 * (hi - lo)), name
            else:
                assert approx is None, name
        assert len(r["top"]) == 3
        ps = [p for _, p in r["top"]]
        assert ps == sorted(ps, reverse=True) and sum(ps) == pytest.approx(1.0, abs=1e-5)
        assert ps[0] == pytest.approx(float(probs[:, y, x].max()), abs=1e-6)
        assert len(set(r["crossLeft"])) == 1 and len(set(r["crossTop"])) == 1 and r["crossLeft"][0] != ""
    assert first["crossLeft"][0] != second["crossLeft"][0]

    before = page.evaluate(CANVAS_STATS, ["prediction"])[0]
    page.locator("#opacity").fill("1")
    after = page.evaluate(CANVAS_STATS, ["prediction"])[0]
    assert after["colours"] < before["colours"] and after["colours"] <= 3
    np.testing.assert_array_equal(drawn(page, "#panel-prediction canvas"), served["prediction"])

    page.click("#region-table th[data-key='pixels'] button")
    pixels = [int(t) for t in page.locator("#region-table tbody td:nth-child(3)").all_inner_texts()]
    assert len(pixels) >= 2 and pixels == sorted(pixels, reverse=True)
    assert page.get_attribute("#region-table th[data-key='pixels']", "aria-sort") == "descending"
    page.click("#region-table th[data-key='pixels'] button")
    pixels = [int(t) for t in page.locator("#region-table tbody td:nth-child(3)").all_inner_texts()]
    assert pixels == sorted(pixels)

    links = page.locator("#download-links a")
    assert links.count() == 1 + len(MAP_NAMES)  # the prediction and every map's PNG
    assert page.get_attribute("#download-links a >> nth=0", "download") == "scene_prediction.png"
    analyses: list[str] = []
    page.on("request", lambda req: analyses.append(req.url) if req.url.endswith("/api/v1/analyze") else None)
    with page.expect_download() as download:
        page.click("#download-npz")
    saved = tmp_path / "scene_maps.npz"
    download.value.save_as(saved)
    npz = np.load(saved)
    for name in values:  # the float32 values of the raw answer, stored as the file's dtype (float16 for most maps)
        np.testing.assert_array_equal(npz[name], values[name].astype(npz[name].dtype))
    with page.expect_download() as download:
        page.click("#download-links a >> nth=1")
    assert download.value.suggested_filename == "scene_confidence.png"
    download.value.save_as(tmp_path / "confidence.png")
    assert np.asarray(Image.open(tmp_path / "confidence.png")).shape == (72, 96, 3)
    assert analyses == [], "downloads come from the kept analysis, not a re-run"

    page.screenshot(path=str(tmp_path / "analysed.png"), full_page=True)
    assert (tmp_path / "analysed.png").stat().st_size > 10_000

    upload(page, [("notes.txt", b"definitely not pixels", "text/plain")])
    page.wait_for_selector("#error:not([hidden])")
    page.wait_for_function("() => document.body.dataset.state !== 'busy'")
    text = page.inner_text("#error")
    assert text.startswith("notes.txt:") and "not an image" in text
    assert page.locator("#thumbs button[data-status='error']").count() == 1
    page.screenshot(path=str(tmp_path / "error.png"))


def test_several_images_thumbnails_and_narrow_layout(page: Any, tmp_path: Path) -> None:
    upload(page, [("small.png", random_png(40, 56, seed=1), "image/png"), ("wide.png", random_png(48, 120, seed=2), "image/png")])
    page.wait_for_function("() => document.querySelectorAll('#thumbs button[data-status=\"done\"]').length === 2", timeout=60_000)
    wait_drawn(page)
    assert page.inner_text("#input-size") == "analysed at 120×48 (the input's own size)"
    page.click("#thumbs li:first-child button")
    wait_drawn(page)
    assert page.inner_text("#input-size") == "analysed at 56×40 (the input's own size)"
    assert page.get_attribute("#thumbs li:first-child button", "aria-current") == "true"
    assert page.evaluate(CANVAS_STATS, ["entropy"])[0]["width"] == 56

    page.evaluate(DROP_FILE, ["dropped.png", list(random_png(30, 30, seed=3))])
    page.wait_for_function("() => document.querySelectorAll('#thumbs button[data-status=done]').length === 3", timeout=60_000)
    wait_drawn(page)
    assert page.inner_text("#thumbs li:last-child .name") == "dropped.png"
    assert page.inner_text("#input-size") == "analysed at 30×30 (the input's own size)"

    wide = [page.locator(f"#panel-{p}").bounding_box() for p in PANELS]
    assert len({round(b["x"]) for b in wide}) == 3
    readout = page.locator("#readout").bounding_box()
    assert readout["x"] > max(b["x"] + b["width"] for b in wide), "the readout sits beside the panels"
    page.evaluate("window.scrollTo(0, 700)")
    readout = page.locator("#readout").bounding_box()
    assert 0 <= readout["y"] < 900 and readout["y"] + readout["height"] > 0, "and stays in view (sticky)"

    page.set_viewport_size({"width": 420, "height": 900})
    page.evaluate("window.scrollTo(0, 0)")
    narrow = [page.locator(f"#panel-{p}").bounding_box() for p in PANELS]
    assert len({round(b["x"]) for b in narrow}) == 1, "one column of panels"
    assert narrow[0]["x"] >= 0 and narrow[0]["x"] + narrow[0]["width"] <= 420
    assert page.evaluate("document.documentElement.scrollWidth") <= 420
    view = page.locator("#panel-entropy .view")
    view.scroll_into_view_if_needed()
    box = view.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("() => document.querySelector('#readout').dataset.pixel !== undefined")
    readout = page.locator("#readout").bounding_box()
    assert readout["y"] > 0 and abs(readout["y"] + readout["height"] - 900) <= 1, "a read pixel pins the readout to the bottom of the screen"
    page.screenshot(path=str(tmp_path / "narrow.png"), full_page=True)
