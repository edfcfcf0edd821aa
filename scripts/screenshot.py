"""Take the README screenshot: the page with one analysed upload (a 12 MP photo by default).

Usage: ``.venv/bin/python scripts/screenshot.py [--model NAME_OR_DIR] [--out docs/screenshot.png]``

Uses ``models/default`` when it exists, otherwise a tiny random-weight test
bundle (the maps then show an untrained model). Needs Chromium (``make browser``).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.io.bundle import CARD_FILE  # noqa: E402
from app.io.resources import models_dir  # noqa: E402
from app.io.synthetic import make_scene  # noqa: E402
from app.web.factory import create_app  # noqa: E402
from app.web.settings import Settings  # noqa: E402

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


def serve(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Start uvicorn on a free loopback port and wait for /readyz."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return server, thread, url
        except httpx.TransportError:
            pass
        if not thread.is_alive():
            break
        time.sleep(0.2)
    raise SystemExit("the server did not become ready")


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
        server, thread, url = serve(Settings(model=model, device=args.device, default_samples=args.samples, max_samples=max(64, args.samples)))
        buf = io.BytesIO()
        if args.image == "photo":
            from skimage import data

            Image.fromarray(data.chelsea()).resize((4000, 3000), Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=90)
            name, mime = "cat_4000x3000.jpg", "image/jpeg"
        else:
            Image.fromarray(make_scene("ood", 3, size=256).image).save(buf, format="PNG")
            name, mime = "ood_scene_3.png", "image/png"
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": args.width, "height": 900}, device_scale_factor=1)
                page.goto(f"{url}/")
                scene: FilePayload = {"name": name, "mimeType": mime, "buffer": buf.getvalue()}
                page.set_input_files("#file-input", scene)
                page.wait_for_function("document.body.dataset.state === 'ready'", timeout=300_000)
                view = page.locator("#panel-mutual_information .view")
                box = view.bounding_box()
                assert box is not None
                view.hover(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
                page.wait_for_function("document.querySelectorAll('#readout-top li').length > 0", timeout=30_000)
                page.evaluate("window.scrollTo(0, 0)")
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
