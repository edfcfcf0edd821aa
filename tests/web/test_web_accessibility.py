"""Accessibility of the page: axe-core (pinned in package-lock.json) in headless Chromium, on a desktop and a phone, before
and after an analysis that shows every panel, the comparison and the evaluation; the phone layout; the keyboard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webutil import LiveServer, encode_image, mask_png, open_page

from app.io.synthetic import make_scene

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"viewport": {"width": 1366, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}
RUN_AXE = """async () => (await axe.run(document, {resultTypes: ['violations']})).violations.map(
  (v) => ({id: v.id, impact: v.impact, targets: v.nodes.map((n) => n.target.join(' '))}))"""
SHOWN = """() => ({
  panels: [...document.querySelectorAll('#panels .panel')].filter((p) => !p.hidden && p.offsetParent !== null).map((p) => p.dataset.panel),
  unavailable: [...document.querySelectorAll('#panels .panel[data-unavailable]')].map((p) => p.dataset.panel),
  compare: !document.querySelector('#compare').hidden,
  evaluation: !document.querySelector('#evaluation').hidden,
  adversarial: !document.querySelector('#adversarial-section').hidden,
  scroll: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
})"""


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations of the page as it is now (the script is injected each time; the page's CSP is bypassed)."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `npm ci` (make test does it)")
    page.add_script_tag(path=str(AXE))
    violations: list[dict[str, Any]] = page.evaluate(RUN_AXE)
    return violations


@pytest.fixture(params=["desktop", "phone"])
def layout_page(request: pytest.FixtureRequest, browser: Any, default_server: LiveServer) -> Iterator[tuple[str, Any]]:
    """The shipped default model's page (feature density and prediction sets: every panel) at 1366 x 900 or 390 x 844 touch."""
    options = DESKTOP if request.param == "desktop" else PHONE
    for page in open_page(browser, default_server.url, bypass_csp=True, **options):
        yield request.param, page


def analyse_two_with_mask(page: Any) -> None:
    """Analyse two synthetic scenes with the attack, the first scored against its mask, and show the first (evaluation,
    comparison and the adversarial section)."""
    first, second = make_scene("test", 3, size=96), make_scene("test", 4, size=96)
    page.check("#adversarial")
    page.set_input_files("#mask-input", [{"name": "scene_mask.png", "mimeType": "image/png", "buffer": mask_png(first.mask)}])
    page.set_input_files(
        "#file-input",
        [
            {"name": "a_scene_with_a_rather_long_file_name_from_a_phone_gallery.png", "mimeType": "image/png", "buffer": encode_image(first.image)},
            {"name": "second.png", "mimeType": "image/png", "buffer": encode_image(second.image)},
        ],
    )
    page.wait_for_function(
        "() => document.body.dataset.state === 'ready' && document.querySelectorAll('#thumbs [data-status=\"done\"]').length === 2", timeout=120_000
    )
    page.locator("#thumbs button").first.click()
    page.wait_for_function("() => !document.querySelector('#compare').hidden && !document.querySelector('#evaluation').hidden", timeout=30_000)


def tap_panel(page: Any, layout: str, panel: str) -> dict[str, float]:
    """Tap (phone) or click (desktop) the middle of a panel's map; the view's box in the viewport after scrolling to it."""
    view = page.locator(f"#panel-{panel} .view")
    view.scroll_into_view_if_needed()
    box: dict[str, float] = view.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    if layout == "phone":
        page.touchscreen.tap(x, y)
    else:
        page.mouse.click(x, y)
    page.wait_for_function("() => document.querySelector('#readout').dataset.pixel !== undefined")
    return box


def test_axe_finds_no_violation_before_and_after_an_analysis_with_every_panel(layout_page: tuple[str, Any]) -> None:
    layout, page = layout_page
    assert axe_violations(page) == []
    analyse_two_with_mask(page)
    shown = page.evaluate(SHOWN)
    assert shown["unavailable"] == []
    assert set(shown["panels"]) >= {"input", "prediction", "confidence", "entropy", "variance", "mutual_information", "feature_distance", "error", "sets"}
    assert shown["compare"] and shown["evaluation"] and shown["adversarial"]
    assert page.inner_text("#adv-summary").startswith("Not attacked: the attack runs on analyses without a mask")
    tap_panel(page, layout, "mutual_information")
    assert axe_violations(page) == []
    page.locator("#thumbs button").nth(1).click()
    page.wait_for_function("() => document.body.dataset.state === 'ready' && document.querySelector('#adv-map').dataset.drawn === '1'", timeout=30_000)
    assert page.is_visible("#adv-table") and page.is_visible("#adv-map")
    assert axe_violations(page) == []


def test_axe_reports_a_control_without_its_label(layout_page: tuple[str, Any]) -> None:
    _, page = layout_page
    page.evaluate("() => { const input = document.querySelector('#seed'); input.closest('label').replaceWith(input); }")
    ids = {v["id"] for v in axe_violations(page)}
    assert "label" in ids


def test_phone_layout_is_one_column_with_the_readout_on_the_first_screen_after_a_tap(browser: Any, default_server: LiveServer) -> None:
    for page in open_page(browser, default_server.url, **PHONE):
        analyse_two_with_mask(page)
        shown = page.evaluate(SHOWN)
        assert shown["scroll"][0] == shown["scroll"][1]
        lefts = {round(page.locator(f"#panel-{p}").bounding_box()["x"]) for p in shown["panels"]}
        assert len(lefts) == 1
        assert page.locator("#readout").bounding_box()["y"] > 844
        view = tap_panel(page, "phone", "entropy")
        values = page.locator("#readout td[data-map='mutual_information']").bounding_box()
        assert values["y"] >= 0 and values["y"] + values["height"] <= 844
        page.wait_for_function("() => document.querySelector(\"#readout td[data-map='mutual_information']\").dataset.value !== undefined")
        assert page.locator("#readout td[data-map='mutual_information']").inner_text() != "—"
        readout = page.locator("#readout").bounding_box()
        assert readout["y"] > view["y"] + 0.1 * view["height"]
        page.locator("#readout-close").tap()
        page.wait_for_function("() => document.querySelector('#readout').dataset.pixel === undefined")
        assert page.evaluate("() => document.activeElement.closest('#panel-entropy') !== null"), "Close gives the focus back to the map"
        assert page.locator("#readout").bounding_box()["y"] > 844


def test_every_control_and_the_map_readout_are_reachable_and_operable_by_keyboard(browser: Any, default_server: LiveServer) -> None:
    for page in open_page(browser, default_server.url, **DESKTOP):
        analyse_two_with_mask(page)
        controls = page.evaluate(
            "() => [...document.querySelectorAll('main input, main select, main button, main [tabindex=\"0\"], main a[href]')]"
            ".filter((el) => el.offsetParent !== null && !el.disabled && el.tabIndex >= 0)"
            ".map((el, i) => { el.dataset.kb = String(i); return el.id || el.className || el.textContent; })"
        )
        reached: set[int] = set()
        page.locator("body").focus()
        for _ in range(len(controls) + 30):
            page.keyboard.press("Tab")
            index = page.evaluate("() => document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.kb : undefined")
            if index is not None:
                reached.add(int(index))
        missing = [c for i, c in enumerate(controls) if i not in reached]
        assert missing == []
        page.focus("#panel-entropy .view")
        page.keyboard.press("ArrowRight")
        page.wait_for_function("() => document.querySelector('#readout').dataset.pixel !== undefined")
        before = page.get_attribute("#readout", "data-pixel")
        page.keyboard.press("ArrowDown")
        page.wait_for_function(f"() => document.querySelector('#readout').dataset.pixel !== {before!r}")
