"""Helpers of the web tests: a live uvicorn server, settings, test images and error checks."""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, Self

import httpx
import numpy as np
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from app.defaults import ALLOWED_HOSTS
from app.io.synthetic import make_scene
from app.web.factory import create_app
from app.web.settings import Settings

MAX_BODY = 256 * 1024
MAX_PIXELS = 20_000
MAX_SAMPLES = 16
TINY_CLASSES = 3
WORKING_SIZE = 32
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class HttpResponse(Protocol):
    """The part of an HTTP response the tests read.

    Both kinds of response the web tests get fit it: ``httpx.Response`` from a :class:`LiveServer`, and the
    ``TestClient``'s, which is ``httpx2.Response`` (``starlette.testclient`` imports ``httpx2 as httpx``).
    """

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...

    @property
    def text(self) -> str: ...

    def json(self, **kwargs: Any) -> Any: ...


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """Run an ASGI app with uvicorn in a background thread until :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    def start(self, timeout: float = 60.0) -> Self:
        """Start and wait until ``/readyz`` answers 200."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn exited during start-up")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server at {self.url} was not ready after {timeout} s")

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout=30)


def web_settings(bundle_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: the tiny bundle on CPU with small limits."""
    values: dict[str, Any] = {
        "model": str(bundle_dir),
        "device": "cpu",
        "default_samples": 4,
        "max_samples": MAX_SAMPLES,
        "max_body_bytes": MAX_BODY,
        "max_pixels": MAX_PIXELS,
        "max_concurrent": 2,
        "allowed_hosts": [*ALLOWED_HOSTS, "testserver"],  # TestClient's Host
    }
    values.update(overrides)
    return Settings(**values)


def encode_image(rgb: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode ``(H, W, 3)`` uint8 with PIL."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


def random_png(height: int = 48, width: int = 64, seed: int = 0) -> bytes:
    """A PNG of smooth random colour blobs (so the tiny model predicts several classes)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR))
    noise = rng.integers(-20, 21, size=rgb.shape)
    return encode_image(np.clip(rgb.astype(np.int64) + noise, 0, 255).astype(np.uint8))


def assert_error(response: HttpResponse, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """Check a response is an error in the common shape with this status, code and (optionally) field."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and len(error["message"]) > 5
    if field is not None:
        assert error["field"] == field
    return dict(error)


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    """Poll ``/readyz`` of an in-process app until it answers 200."""
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "app never became ready"
        time.sleep(0.02)


def labelled_scene(index: int = 3, size: int = 64) -> tuple[bytes, np.ndarray]:
    """An OOD synthetic scene as PNG bytes and its mask folded to the tiny model's 3 classes (OOD stays 255)."""
    scene = make_scene("ood", index, size=size)
    mask = scene.mask.copy()
    mask[(mask >= TINY_CLASSES) & (mask != 255)] = TINY_CLASSES - 1
    return encode_image(scene.image), mask


def mask_png(mask: np.ndarray) -> bytes:
    """A single-channel (mode L) PNG of class indices."""
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def open_page(browser: Any, url: str, **context_options: Any) -> Iterator[Any]:
    """The page at ``url``; fails the test on JavaScript errors or on any request that leaves the server."""
    context = browser.new_context(**({"viewport": {"width": 1280, "height": 900}} | context_options))
    pg = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("request", lambda req: None if req.url.startswith((url, "data:", "blob:")) else outside.append(req.url))
    pg.goto(f"{url}/")
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"
    assert outside == [], f"requests outside the server: {outside}"


CANVAS_RGB = """(selector) => {
  const c = document.querySelector(selector);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  return {height: c.height, width: c.width, rgb: Array.from(d.filter((_, i) => i % 4 !== 3))};
}"""


def drawn(page: Any, selector: str) -> np.ndarray:
    """The RGB pixels of the canvas at ``selector`` as the page drew them, ``(H, W, 3)`` uint8."""
    canvas = page.evaluate(CANVAS_RGB, selector)
    return np.array(canvas["rgb"], dtype=np.uint8).reshape(canvas["height"], canvas["width"], 3)


def served_png(url: str, path: str) -> np.ndarray:
    """The RGB pixels of the PNG the server answers at ``path``."""
    response = httpx.get(f"{url}{path}", timeout=60)
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
