"""Take the docs' screenshot (docs/screenshot.png) from the running app: `make screenshots`.

Usage: ``.venv/bin/python scripts/screenshot.py [--model NAME_OR_DIR] [--out docs/screenshot.png]``

Starts the real server the way ``make run`` does (``python -m app serve``: uvicorn with the app factory) on a free
loopback port, waits for ``/readyz``, uploads one image (a 4000x3000 photo by default) in headless Chromium,
points at the mutual-information panel so the readout is filled, saves a full-page screenshot and stops the
server. Uses ``models/default`` when it exists, otherwise a tiny random-weight test bundle (the maps then show an
untrained model). Needs Chromium (``make browser``).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.io.bundle import CARD_FILE  # noqa: E402
from app.io.resources import models_dir  # noqa: E402
from app.io.synthetic import make_scene  # noqa: E402

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pick_model(requested: str | None, scratch: Path) -> str:
    """The requested bundle, else models/default, else a freshly built tiny test bundle."""
    if requested:
        return requested
    if (models_dir() / "default" / CARD_FILE).exists():
        return "default"
    spec = importlib.util.spec_from_file_location("tests_conftest", ROOT / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    print("models/default not found: using a tiny random-weight bundle", file=sys.stderr)
    return str(fixtures.make_tiny_bundle(scratch / "tiny"))


def serve(model: str, device: str, samples: int) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m app serve`` (uvicorn) on a free loopback port and wait until ``/readyz`` answers 200."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, SEGU_DEFAULT_SAMPLES=str(samples), SEGU_MAX_SAMPLES=str(max(64, samples)))
    command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port), "--model", model, "--device", device]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(server)
    raise SystemExit("the server did not become ready within 300 s")


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def main() -> int:
    """Serve, analyse one scene in headless Chromium and save a full-page screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundle name or folder (default: models/default, else a tiny test bundle)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--image", choices=["photo", "ood-scene"], default="photo", help="a 4000x3000 JPEG of skimage's chelsea, or a synthetic OOD scene")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found; install it with `make browser`")
    from playwright.sync_api import FilePayload, sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        model = pick_model(args.model, Path(tmp))
        buf = io.BytesIO()
        if args.image == "photo":
            from skimage import data

            Image.fromarray(data.chelsea()).resize((4000, 3000), Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=90)
            name, mime = "cat_4000x3000.jpg", "image/jpeg"
        else:
            Image.fromarray(make_scene("ood", 3, size=256).image).save(buf, format="PNG")
            name, mime = "ood_scene_3.png", "image/png"
        server, url = serve(model, args.device, args.samples)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": args.width, "height": 900}, device_scale_factor=1)
                page.goto(f"{url}/")
                scene: FilePayload = {"name": name, "mimeType": mime, "buffer": buf.getvalue()}
                page.set_input_files("#file-input", scene)
                page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=300_000)
                view = page.locator("#panel-mutual_information .view")
                box = view.bounding_box()
                assert box is not None
                view.hover(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
                page.wait_for_function("() => document.querySelectorAll('#readout-top li').length > 0", timeout=30_000)
                page.evaluate("() => window.scrollTo(0, 0)")
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            stop(server)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
