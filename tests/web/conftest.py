"""Web fixtures: a real uvicorn server on a free loopback port serving the tiny bundle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from webutil import LiveServer, web_settings


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
