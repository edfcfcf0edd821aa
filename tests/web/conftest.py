"""Web fixtures: a real uvicorn server on a free loopback port serving the tiny bundle, and headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webutil import CHROMIUM, CHROMIUM_ARGS, LiveServer, web_settings


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
    """The page at ``/``; fails the test on JavaScript errors or on any request that leaves the server."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("request", lambda req: None if req.url.startswith((base_url, "data:", "blob:")) else outside.append(req.url))
    pg.goto(f"{base_url}/")
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"
    assert outside == [], f"requests outside the server: {outside}"
