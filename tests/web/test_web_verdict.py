"""The image-level verdict's banner in headless Chromium: present for every test-time augmentation mode, unusual with
a p-value when the image is checked, "not checked" with the reason in words when the setting has no reference."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from webutil import LiveServer, open_page, random_png

pytestmark = pytest.mark.browser

DRAWN = "() => document.querySelectorAll('.view canvas[data-drawn=\"1\"]').length === 6 && document.body.dataset.state === 'ready'"
SETTLED = """([status, text]) => { const s = document.querySelector('#ood-verdict');
  return document.body.dataset.state === 'ready' && s.dataset.status === status && s.textContent.includes(text); }"""


@pytest.fixture
def working_page(browser: Any, working_server: LiveServer) -> Iterator[Any]:
    yield from open_page(browser, working_server.url)


def test_the_banner_is_present_for_every_tta_mode(working_page: Any) -> None:
    page = working_page
    modes = page.eval_on_selector_all("#tta option", "(options) => options.map((o) => o.value)")
    assert modes[0] == "none" and len(modes) == 4
    page.select_option("#tta", "none")
    page.set_input_files("#file-input", [{"name": "scene.png", "mimeType": "image/png", "buffer": random_png(40, 56, seed=7)}])
    page.wait_for_function(DRAWN, timeout=60_000)
    for mode in modes:
        page.select_option("#tta", mode)
        expected = ("unusual", "Unusual image (p = 0.0099") if mode == "none" else ("not_checked", f"test-time augmentation ({mode})")
        page.wait_for_function(SETTLED, arg=list(expected), timeout=120_000)
        assert page.is_visible("#ood-verdict"), mode
        text = page.inner_text("#ood-verdict")
        assert "Tiny random test scenes only." in text, text
        assert "within" not in text, text
        if mode != "none":
            assert page.inner_text("#ood-title") == "Image-level check: this image was not checked."
            assert page.get_attribute("#ood-verdict", "data-unusual") == "false"
