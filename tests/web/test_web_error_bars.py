"""Monte-Carlo error bars on the page, in headless Chromium against the live server: each panel's image mean ± its
error as the API reports it, the region table's errors, the comparison of two uploads (verdicts checked against
|a − b| ≤ z·sqrt(se_a² + se_b²) computed here from the API's numbers) and the wording when no error can be estimated."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from webutil import LiveServer, open_page, random_png, web_settings

from app.defaults import NOISE_Z

pytestmark = pytest.mark.browser

PANEL_MAPS = ["confidence", "entropy", "variance", "mutual_information"]
READY = "() => document.body.dataset.state === 'ready' && document.querySelectorAll('.view canvas[data-drawn=\"1\"]').length === 6"
COMPARED = "() => !document.querySelector('#compare').hidden && document.body.dataset.state === 'ready'"


def upload(page: Any, *files: tuple[str, bytes]) -> None:
    page.set_input_files("#file-input", [{"name": n, "mimeType": "image/png", "buffer": b} for n, b in files])


def wait_done(page: Any, count: int) -> None:
    page.wait_for_function(
        f"() => document.querySelectorAll('#thumbs [data-status=\"done\"]').length === {count} && document.body.dataset.state === 'ready'", timeout=60_000
    )


def api(base_url: str, name: str, image: bytes, **params: str) -> dict[str, Any]:
    """The API's answer for the image with the page's settings (defaults: 4 samples, seed 0, uncalibrated, working size)."""
    form = {"samples": "4", "seed": "0", "calibrated": "false", "resolution": "working"} | params
    response = httpx.post(f"{base_url}/api/v1/analyze", files={"file": (name, image)}, data=form, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def rounded(mean: float, se: float) -> tuple[str, str]:
    """The mean and its error as the page should show them: the error to 2 significant digits when it starts with 1 or
    2, else 1; the mean to the same decimal place."""
    exponent = math.floor(math.log10(se))
    digits = 2 if se / 10**exponent < 3 else 1
    places = max(0, digits - 1 - exponent)
    return f"{mean:.{places}f}", f"{se:.{places}f}"


def assert_mean(text: str, mean: float, se: float | None, method: str) -> None:
    """``text`` shows ``mean`` with its error ``se`` (0: exact, None: not estimable; an upper bound for tiled analyses)."""
    if se is None or se == 0:
        shown = re.fullmatch(r"(\S+) (?:\(exact\)|± \?)", text)
        assert shown is not None and text.endswith("(exact)" if se == 0 else "± ?"), (text, se)
        assert math.isclose(float(shown.group(1)), mean, rel_tol=5e-3 if abs(mean) >= 1e-3 else 5e-2, abs_tol=1e-12), "3 significant digits"
        return
    m, e = rounded(mean, se)
    assert text == (f"{m} (≤ ±{e})" if method == "tile_bound" else f"{m} ± {e}"), (text, mean, se)


def expected_cell(mean: float, se: float | None) -> str:
    if se is None:
        return f"{mean:.4f} ±?"
    if se == 0:
        return f"{mean:.4f}"
    m, e = rounded(mean, se)
    return f"{m} ±{e}"


def verdict(a: dict[str, Any], b: dict[str, Any]) -> str:
    """within / beyond / unknown for two of the API's maps, by the rule of app/maps/mc_error.py."""
    if a["mean_error"] is None or b["mean_error"] is None:
        return "unknown"
    return "within" if abs(a["mean"] - b["mean"]) <= NOISE_Z * math.sqrt(a["mean_error"] ** 2 + b["mean_error"] ** 2) else "beyond"


def page_verdicts(page: Any) -> dict[str, tuple[str, str]]:
    """Map → (verdict in words, data-verdict) of the comparison table."""
    script = "(rows) => rows.map((r) => [r.dataset.map, r.lastElementChild.textContent, r.lastElementChild.dataset.verdict])"
    rows = page.eval_on_selector_all("#compare-table tbody tr", script)
    return {name: (text, code) for name, text, code in rows}


def assert_compared(page: Any, this: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """The comparison table shows both images' means and the verdict computed here; returns the verdicts."""
    shown = page_verdicts(page)
    expected: list[str] = []
    others = {m["name"]: m for m in other["maps"]}
    assert set(shown) == {m["name"] for m in this["maps"]}
    for a in this["maps"]:
        b = others[a["name"]]
        want = verdict(a, b)
        text, code = shown[a["name"]]
        words = {"within": "within MC noise", "beyond": "beyond MC noise", "unknown": "cannot be judged"}[want]
        assert text.startswith(words) and code == want, (a["name"], text, a, b)
        cells = page.locator(f"#compare-table tr[data-map='{a['name']}'] td").all_inner_texts()
        assert_mean(cells[0], a["mean"], a["mean_error"], this["error_method"])
        assert_mean(cells[1], b["mean"], b["mean_error"], other["error_method"])
        expected.append(want)
    return expected


def test_panels_and_region_table_show_the_apis_means_and_errors(page: Any, base_url: str) -> None:
    image = random_png(40, 56, seed=61)
    upload(page, ("scene.png", image))
    page.wait_for_function(READY, timeout=60_000)
    answer = api(base_url, "scene.png", image)
    assert answer["error_method"] == "jackknife"
    maps = {m["name"]: m for m in answer["maps"]}
    for name in PANEL_MAPS:
        text = page.inner_text(f"#panel-{name} .map-mean")
        assert_mean(text.removeprefix("image mean "), maps[name]["mean"], maps[name]["mean_error"], "jackknife")
        value = re.fullmatch(r"image mean (\S+) (?:± (\S+)|\(exact\))", text)
        assert value is not None
        assert abs(float(value.group(1)) - maps[name]["mean"]) <= 0.5 * 10 ** -len(value.group(1).split(".")[1]) + 1e-12
        if value.group(2):
            shown = value.group(2).split(".")[1].lstrip("0")
            assert len(shown) == (2 if shown[0] in "12" else 1), "2 significant digits when the error starts with 1 or 2, else 1"
            assert abs(float(value.group(2)) - maps[name]["mean_error"]) <= 0.5 * 10 ** -len(value.group(2).split(".")[1]) + 1e-12
    assert maps["confidence"]["mean_error"] == 0 and page.inner_text("#panel-confidence .map-mean").endswith("(exact)")
    assert all(maps[n]["mean_error"] > 0 for n in ("entropy", "variance", "mutual_information"))

    columns = page.eval_on_selector_all("#region-table thead th", "(ths) => ths.map((th) => th.dataset.key)")
    for row in answer["regions"]:
        if row["kind"] != "class":
            continue
        cells = page.locator("#region-table tbody tr", has_text=f"{row['class_name']} (all)").first.locator("td").all_inner_texts()
        for name in maps:
            expected = "—" if name == "feature_distance" else expected_cell(row["means"][name], row["errors"][name])  # tiny: no density
            assert cells[columns.index(name)] == expected, (name, cells, row)
    method = page.inner_text("#error-method")
    assert "jackknife" in method and answer["estimator"] == "sampled" and "Rao–Blackwellised" not in method  # 4 samples: 1 draw of 4
    assert page.is_hidden("#compare"), "one image: nothing to compare with"
    page.fill("#samples", "16")
    upload(page, ("scene.png", image))
    page.wait_for_function(READY, timeout=60_000)
    answer = api(base_url, "scene.png", image, samples="16")
    assert answer["estimator"] == "rao_blackwellised" and answer["enumerated_channels"] == 2
    method = page.inner_text("#error-method")
    assert "Rao–Blackwellised: each pixel's 2 channels summed exactly" in method and "95 % interval" in method


def test_two_uploads_are_compared_within_and_beyond_mc_noise(page: Any, base_url: str) -> None:
    first, second = random_png(40, 56, seed=62), random_png(40, 56, seed=63)
    upload(page, ("first.png", first))
    wait_done(page, 1)
    upload(page, ("second.png", second))
    wait_done(page, 2)
    page.wait_for_function(COMPARED, timeout=60_000)
    a, b = api(base_url, "first.png", first), api(base_url, "second.png", second)
    assert page.inner_text("#compare-this") == "second.png" and page.inner_text("#compare-other") == "first.png"
    assert page.eval_on_selector("#compare-with", "(s) => s.selectedOptions[0].textContent") == "first.png", "the image shown before"
    verdicts = assert_compared(page, b, a)
    assert page.is_hidden("#compare-settings"), "same settings: like for like"
    assert f"≤ {NOISE_Z:g} · √(se_a² + se_b²)" in page.inner_text("#compare-note")

    upload(page, ("first again.png", first))
    wait_done(page, 3)
    page.wait_for_function("() => document.querySelector('#compare-this').textContent === 'first again.png'", timeout=60_000)
    assert page.inner_text("#compare-other") == "second.png", "by default the image shown before"
    page.fill("#seed", "5")
    page.wait_for_function("() => document.querySelector('#run-info').textContent.includes('seed 5')", timeout=60_000)
    page.select_option("#compare-with", label="first.png")
    page.wait_for_function("() => document.querySelector('#compare-other').textContent === 'first.png'", timeout=60_000)
    again = api(base_url, "first again.png", first, seed="5")
    verdicts += assert_compared(page, again, a)
    settings = page.inner_text("#compare-settings")
    assert page.is_visible("#compare-settings") and "seed 5 here, 0 there" in settings and "samples" not in settings
    assert {"within", "beyond"} <= set(verdicts), f"both verdicts exercised: {verdicts}"


def test_one_sample_has_no_error_estimate(page: Any, base_url: str) -> None:
    image = random_png(40, 56, seed=64)
    page.fill("#samples", "1")
    upload(page, ("one.png", image))
    page.wait_for_function(READY, timeout=60_000)
    one = api(base_url, "one.png", image, samples="1")
    assert one["error_method"] == "unavailable"
    for m in one["maps"]:
        if m["name"] in PANEL_MAPS:
            assert_mean(page.inner_text(f"#panel-{m['name']} .map-mean").removeprefix("image mean "), m["mean"], m["mean_error"], "unavailable")
    assert page.inner_text("#panel-entropy .map-mean").endswith("± ?")
    assert "at least 2 MC samples" in page.get_attribute("#panel-entropy .map-mean", "title")
    assert page.inner_text("#panel-confidence .map-mean").endswith("(exact)")
    assert "1 MC sample" in page.inner_text("#error-method")
    assert page.inner_text("#run-info").startswith("1 MC sample · ")
    assert "±?" in page.locator("#region-table tbody tr").first.inner_text()

    upload(page, ("two.png", random_png(40, 56, seed=65)))
    wait_done(page, 2)
    page.fill("#samples", "4")
    page.wait_for_function("() => document.querySelector('#run-info').textContent.startsWith('4 MC samples')", timeout=60_000)
    page.wait_for_function(COMPARED, timeout=60_000)
    assert page.inner_text("#compare-other") == "one.png"
    shown = page_verdicts(page)
    assert shown["entropy"][1] == "unknown" and shown["entropy"][0].startswith("cannot be judged")
    assert shown["confidence"][1] == "beyond", "exact maps stay comparable"
    assert "MC samples 4 here, 1 there" in page.inner_text("#compare-settings")


@pytest.fixture(scope="module")
def tiled_url(tiny_bundle_dir: Path) -> Iterator[str]:
    """A live server whose memory budget makes it analyse even small images in sliding windows."""
    server = LiveServer(web_settings(tiny_bundle_dir, memory_budget=2**20)).start()
    yield server.url
    server.stop()


def test_a_tiled_analysis_shows_an_upper_bound(browser: Any, tiled_url: str) -> None:
    image = random_png(40, 56, seed=66)
    for page in open_page(browser, tiled_url):
        upload(page, ("tiled.png", image))
        page.wait_for_function(READY, timeout=60_000)
        tiled = api(tiled_url, "tiled.png", image)
        assert tiled["error_method"] == "tile_bound"
        for m in tiled["maps"]:
            if m["name"] in PANEL_MAPS:
                assert_mean(page.inner_text(f"#panel-{m['name']} .map-mean").removeprefix("image mean "), m["mean"], m["mean_error"], "tile_bound")
        assert "≤ ±" in page.inner_text("#panel-entropy .map-mean") and "upper bound" in page.get_attribute("#panel-entropy .map-mean", "title").lower()
        assert "upper bound" in page.inner_text("#error-method")
        row = tiled["regions"][0]
        assert row["errors"]["entropy"] is None
        cells = page.locator("#region-table tbody tr", has_text=f"{row['class_name']} (all)").first.locator("td").all_inner_texts()
        columns = page.eval_on_selector_all("#region-table thead th", "(ths) => ths.map((th) => th.dataset.key)")
        assert cells[columns.index("entropy")] == expected_cell(row["means"]["entropy"], None)
        assert cells[columns.index("confidence")] == expected_cell(row["means"]["confidence"], 0.0)
