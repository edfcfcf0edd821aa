"""The page's adversarial-sensitivity panel in headless Chromium against the live server."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from webutil import drawn, random_png

pytestmark = pytest.mark.browser

NEVER = (0xC8, 0xCC, 0xD2)


def _png(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_the_attack_panel_shows_the_served_shares_flip_map_and_attacked_image(page: Any) -> None:
    assert page.is_hidden("#adversarial-section")
    page.check("#adversarial")
    with page.expect_response(lambda r: "/api/v1/analyze" in r.url and r.status == 200) as answer:
        page.set_input_files("#file-input", [{"name": "scene.png", "mimeType": "image/png", "buffer": random_png(40, 56, seed=71)}])
    adv = answer.value.json()["adversarial"]
    assert adv is not None
    page.wait_for_function("() => document.querySelector('#adv-image').dataset.drawn === '1'", timeout=60_000)
    level = next(lv for lv in adv["levels"] if lv["epsilon"] == 2)
    digits = 1 if level["flip_share"] < 0.1 else 0
    assert page.inner_text("#adv-summary") == f"Fooled at ε = 2/255: {100 * level['flip_share']:.{digits}f} % of pixels change class."
    rows = page.locator("#adv-table tbody tr")
    assert rows.count() == len(adv["levels"]) + 1

    flips = _png(adv["flip_epsilon_png"])
    shown = drawn(page, "#adv-map")
    assert shown.shape[:2] == flips.shape
    never = np.all(shown == NEVER, axis=-1)
    assert np.array_equal(never, flips == 255)
    first = shown[flips == 0]
    assert len(first) == 0 or ((first == first[0]).all() and tuple(first[0]) != NEVER)

    assert page.input_value("#adv-level") == str(adv["levels"].index(level))
    assert np.array_equal(drawn(page, "#adv-image"), _png(level["image"])[..., :3])
    page.select_option("#adv-level", "0")
    page.wait_for_function(
        "(n) => { const c = document.querySelector('#adv-image'); return c.getContext('2d').getImageData(0, 0, 1, 1).data.join() === n; }",
        arg=",".join(map(str, [*_png(adv["levels"][0]["image"])[0, 0, :3].tolist(), 255])),
    )
    assert np.array_equal(drawn(page, "#adv-image"), _png(adv["levels"][0]["image"])[..., :3])

    page.uncheck("#adversarial")
    page.wait_for_function("() => document.querySelector('#adversarial-section').hidden", timeout=60_000)
