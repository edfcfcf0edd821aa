"""Web fixtures: a real uvicorn server on a free loopback port serving the tiny bundle, and headless Chromium."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webutil import CHROMIUM, CHROMIUM_ARGS, WORKING_SIZE, LiveServer, open_page, web_settings


@pytest.fixture(scope="session")
def live_server(tiny_bundle_dir: Path) -> Iterator[LiveServer]:
    """A uvicorn server on a free loopback port, ready (model loaded and warmed up)."""
    server = LiveServer(web_settings(tiny_bundle_dir)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def base_url(live_server: LiveServer) -> str:
    """The live server's root URL."""
    return live_server.url


@pytest.fixture(scope="session")
def working_bundle_dir(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle with a working size of WORKING_SIZE px, a training domain in words, an image reference that every
    image is more uncertain than and an image test that every image fails (so every unaugmented analysis is "unusual")."""
    out = tmp_path_factory.mktemp("working") / "tiny_working"
    shutil.copytree(tiny_bundle_dir, out)
    card = json.loads((out / "model.json").read_text())
    card["input"] = {"working_size": WORKING_SIZE}
    card["domain"] = "Tiny random test scenes only."
    low, high = [0.0] * 10, [1.0] * 10
    card["image_reference"] = {
        "split": "test",
        "images": 10,
        "samples": 4,
        "means": {"confidence": high, "entropy": low, "variance": low, "mutual_information": low},
    }
    card["image_test"] = {
        "method": "test: the entropy's image mean, far above 100 calibration scores of 0",
        "components": [{"name": "entropy", "centre": -100.0, "scale": 1.0}],
        "fitted_on": "none",
        "fit_images": 2,
        "calibrated_on": "100 zeros",
        "samples": 4,
        "scores": [0.0] * 100,
    }
    (out / "model.json").write_text(json.dumps(card))
    return out


@pytest.fixture(scope="session")
def default_server() -> Iterator[LiveServer]:
    """The shipped default model on CPU with the real limits and the page's default samples (what users get: the size and
    speed targets are about it); e.g. for uploading a 4000 x 3000 JPEG."""
    bundle = Path(__file__).resolve().parents[2] / "models" / "default"
    server = LiveServer(web_settings(bundle, default_samples=20, max_samples=64, max_body_bytes=2**26, max_pixels=40_000_000)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def working_server(working_bundle_dir: Path) -> Iterator[LiveServer]:
    """A live server of :func:`working_bundle_dir` listing components down to 4 pixels (long region tables)."""
    server = LiveServer(web_settings(working_bundle_dir, min_area=4)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def two_model_server(tiny_bundle_dir: Path, second_bundle_dir: Path) -> Iterator[LiveServer]:
    """The tiny bundle (the default) and the second one (4 other classes, a card default of 6 samples) served together, with no
    SEGU_DEFAULT_SAMPLES: each model's card decides (tiny's: 20)."""
    settings = web_settings(tiny_bundle_dir, models=[str(tiny_bundle_dir), str(second_bundle_dir)], default_samples=None, max_samples=32)
    server = LiveServer(settings).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (the system's); a missing browser fails the test."""
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: run `make browser` (make test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, base_url: str) -> Iterator[Any]:
    """The page of the tiny bundle's server, 1280 x 900."""
    yield from open_page(browser, base_url)
