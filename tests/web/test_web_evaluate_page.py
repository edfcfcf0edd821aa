"""The page's evaluate mode (image + mask) in headless Chromium against the live server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from webutil import encode_image, labelled_scene, mask_png

from app.web.encoding import decode_raw
from app.web.schemas.evaluation import EvaluateResponse

pytestmark = pytest.mark.browser

CANVAS_STATS = """(selector) => {
  const c = document.querySelector(selector);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let opaque = 0; const colours = new Set();
  for (let i = 0; i < d.length; i += 4) { if (d[i + 3] > 0) opaque++; colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]); }
  return {width: c.width, height: c.height, opaque, pixels: d.length / 4, colours: colours.size, drawn: c.dataset.drawn || null};
}"""
METRICS = """() => Object.fromEntries([...document.querySelectorAll('#metrics-table tr')].map(
  (tr) => [tr.querySelector('td').dataset.metric, [tr.querySelector('th').textContent, tr.querySelector('td').textContent]]))"""
DETECTION = """() => ({
  head: [...document.querySelectorAll('#detection-table thead th')].map((th) => th.textContent),
  rows: [...document.querySelectorAll('#detection-table tbody tr')].map(
    (tr) => [tr.dataset.map, ...[...tr.querySelectorAll('td')].map((td) => td.textContent)]),
})"""


def wait_scored(page: Any) -> None:
    page.wait_for_function(
        "() => document.body.dataset.state === 'ready' && !document.querySelector('#panel-error').hidden"
        " && document.querySelectorAll('.view canvas[data-drawn=\"1\"]').length === 7"
        " && document.querySelector('#reliability canvas').dataset.drawn === '1'",
        timeout=60_000,
    )


def test_evaluate_mode_draws_errors_reliability_and_metrics(page: Any, base_url: str, tmp_path: Path) -> None:
    image, mask = labelled_scene()
    assert page.is_hidden("#evaluation") and page.is_hidden("#panel-error")
    page.fill("#samples", "3")
    page.fill("#ood-label", "255")
    page.set_input_files("#mask-input", [{"name": "scene_mask.png", "mimeType": "image/png", "buffer": mask_png(mask)}])
    assert "scene_mask.png" in page.inner_text("#mask-note")
    page.set_input_files("#file-input", [{"name": "scene.png", "mimeType": "image/png", "buffer": image}])
    wait_scored(page)

    error_panel = page.evaluate(CANVAS_STATS, "#panel-error canvas")
    assert (error_panel["width"], error_panel["height"]) == (64, 64)
    assert error_panel["opaque"] == error_panel["pixels"] and error_panel["colours"] >= 2
    diagram = page.evaluate(CANVAS_STATS, "#reliability canvas")
    assert diagram["width"] > 300 and diagram["opaque"] == diagram["pixels"] and diagram["colours"] > 3
    boxes = [page.locator(f"#panel-{p}").bounding_box() for p in ("mutual_information", "error")]
    assert all(b["width"] > 100 for b in boxes)

    expected = EvaluateResponse.model_validate(
        httpx.post(
            f"{base_url}/api/v1/evaluate",
            files={"file": ("scene.png", image), "mask": ("m.png", mask_png(mask))},
            data={"samples": "3", "seed": "0", "ood_label": "255", "raw": "true"},
            timeout=60,
        ).json()
    )
    metrics = page.evaluate(METRICS)
    assert metrics["miou"][0] == "mIoU" and metrics["miou"][1] == f"{expected.metrics.segmentation.miou:.4f}"
    assert metrics["pixel_accuracy"][1] == f"{expected.metrics.segmentation.pixel_accuracy:.4f}"
    assert metrics["ece_softmax"][1] == f"{expected.metrics.calibration['softmax'].ece:.4f}"
    assert "ece_mc_mean" in metrics and "ece_softmax_scaled" not in metrics
    assert "mIoU" in page.inner_text("#metrics-table")
    detection = page.evaluate(DETECTION)
    assert detection["head"] == ["Map", "Error AUROC", "AURC", "OOD AUROC (label 255)"]
    assert [r[0] for r in detection["rows"]] == ["confidence", "entropy", "variance", "mutual_information"]
    assert expected.metrics.ood_detection is not None
    for name, auroc, _aurc, ood in detection["rows"]:
        assert auroc == f"{expected.metrics.error_detection[name].auroc:.3f}"
        assert ood == f"{expected.metrics.ood_detection[name].auroc:.3f}"
    assert page.inner_text("#eval-mask-name") == "scene_mask.png"
    assert page.locator("#download-links a[download='scene_error_map.png']").count() == 1

    assert expected.error_map.values is not None
    codes = decode_raw(expected.error_map.values)
    view = page.locator("#panel-error .view")
    box = view.bounding_box()
    view.hover(position={"x": 0.5 * box["width"], "y": 0.5 * box["height"]})
    text = page.inner_text("#readout-pixel")
    pixel = re.match(r"x (\d+), y (\d+)", text)
    assert pixel is not None, text
    x, y = (int(v) for v in pixel.groups())
    assert ["correct", "wrong", "not scored"][int(codes[y, x])] + " against the mask" in text
    page.wait_for_function("() => (() => { const r = document.querySelector('#readout'); return r.dataset.exact === r.dataset.pixel; })()")
    page.screenshot(path=str(tmp_path / "evaluated.png"), full_page=True)

    page.click("#mask-clear")
    page.wait_for_function("() => document.body.dataset.state === 'ready' && document.querySelector('#panel-error').hidden", timeout=60_000)
    assert page.is_hidden("#evaluation")
    assert page.evaluate("document.querySelectorAll('.view canvas[data-drawn=\"1\"]').length") == 6

    page.set_input_files("#mask-input", [{"name": "photo_as_mask.png", "mimeType": "image/png", "buffer": encode_image(np.zeros((64, 64, 3), np.uint8))}])
    page.wait_for_selector("#error-mask:not([hidden])", timeout=60_000)
    page.wait_for_function("() => document.body.dataset.state !== 'busy'")
    assert "single-channel" in page.inner_text("#error-mask")
    assert page.locator("#thumbs button[data-status='done']").count() == 1, "a rejected mask keeps the previous result"
    assert page.evaluate("document.querySelectorAll('.view canvas[data-drawn=\"1\"]').length") == 6 and page.is_hidden("#mask-clear")

    page.set_input_files("#mask-input", [{"name": "scene_mask.png", "mimeType": "image/png", "buffer": mask_png(mask)}])
    wait_scored(page)
    assert page.is_hidden("#error") and page.is_hidden("#error-mask") and page.locator("#thumbs button[data-status='done']").count() == 1
