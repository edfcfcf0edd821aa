"""Tiled TIFF uploads beyond ``max_pixels`` are read tile by tile on the server, against real uvicorn servers: a job whose
answer (previews, the input's preview, exact pixels from its store) equals the in-memory analysis of the same pixels
sent as a PNG; refusals for other resolutions, truncated files and damaged tiles, leaving no store behind.

The tiny model with a 1 MiB memory budget analyses a 64×2100 strip in sliding windows either way (as in
``test_web_streamed.py``); the tiled server decodes at most 100 000 pixels whole, so the 134 400-pixel TIFF can only be
read in windows.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tifffile
from PIL import Image
from test_web_streamed import FORM, HEIGHT, TIMEOUT, WIDTH, analyse, settings_of, strip
from webutil import LiveServer, assert_error

from app.error_codes import ErrorCode
from app.io.bundle import load_bundle
from app.io.decoding import ImageDecodeError
from app.io.pixel_source import ArraySource
from app.maps.registry import MAP_NAMES
from app.request import AnalysisRequest
from app.web.encoding import jpeg_bytes
from app.web.uploads import probe_upload
from app.workflows.analyzer import Analyzer
from app.workflows.stream_folder import reduced_rgb

TILE = 64


@pytest.fixture(scope="module")
def tiled_stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiled-stores")


@pytest.fixture(scope="module")
def tiled(tiny_bundle_dir: Path, tiled_stores: Path) -> Iterator[LiveServer]:
    """Decodes at most 100 000 pixels whole; larger tiled TIFFs are read in windows."""
    live = LiveServer(settings_of(tiny_bundle_dir, max_pixels=100_000, max_body_bytes=2**22, store_dir=tiled_stores, cache_entries=2)).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def reference(tiny_bundle_dir: Path) -> Iterator[LiveServer]:
    live = LiveServer(settings_of(tiny_bundle_dir, stream_pixels=10**9)).start()
    yield live
    live.stop()


def pixels(seed: int = 0) -> np.ndarray:
    with Image.open(io.BytesIO(strip(seed))) as png:
        return np.asarray(png.convert("RGB"))


def tiled_tiff(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    tifffile.imwrite(out, rgb, tile=(TILE, TILE), compression="zlib", photometric="rgb")
    return out.getvalue()


def post(url: str, body: bytes, **form: str) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/analyze", files={"file": ("slide.tif", body)}, data={**FORM, **form}, timeout=TIMEOUT)


def run_job(url: str, body: bytes) -> dict[str, Any]:
    """POST the TIFF as a job and poll it to its end; its last status."""
    response = post(url, body, mode="job")
    assert response.status_code == 202, response.text
    status_url = response.json()["status_url"]
    deadline = time.monotonic() + TIMEOUT
    while True:
        status: dict[str, Any] = httpx.get(f"{url}{status_url}", timeout=TIMEOUT).json()
        if status["state"] in ("done", "failed", "cancelled"):
            return status
        assert time.monotonic() < deadline
        time.sleep(0.02)


def analyse_tiff(url: str, body: bytes) -> dict[str, Any]:
    status = run_job(url, body)
    assert status["state"] == "done", status
    result = httpx.get(f"{url}{status['result_url']}", timeout=TIMEOUT)
    assert result.status_code == 200, result.text
    return dict(result.json())


def data_url_image(url: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return np.asarray(image.convert("RGB"))


def test_a_tiled_tiff_beyond_max_pixels_is_analysed_in_windows_as_its_png_is_in_memory(tiled: LiveServer, reference: LiveServer) -> None:
    rgb = pixels()
    answer = analyse_tiff(tiled.url, tiled_tiff(rgb))
    want = analyse(reference.url, strip())
    assert answer["analysed_size"] == want["analysed_size"] == [WIDTH, HEIGHT]
    assert (answer["preview_factor"], answer["width"], answer["height"]) == (2, WIDTH // 2, HEIGHT // 2)
    for got, expected in zip(answer["maps"], want["maps"], strict=True):
        assert got["mean"] == pytest.approx(expected["mean"], rel=1e-6, abs=1e-9), got["name"]
    for x, y in ((0, 0), (WIDTH - 1, HEIGHT - 1), (1234, 17)):
        got = httpx.get(f"{tiled.url}{answer['pixel_url']}", params={"x": x, "y": y}, timeout=TIMEOUT).json()
        expected = httpx.get(f"{reference.url}{want['pixel_url']}", params={"x": x, "y": y}, timeout=TIMEOUT).json()
        for name in MAP_NAMES:
            assert got["values"][name] == pytest.approx(expected["values"][name], rel=2**-11, abs=2**-24), (x, y, name)
        assert got["prediction"] == expected["prediction"]
    boxes = rgb.reshape(HEIGHT // 2, 2, WIDTH // 2, 2, 3).astype(np.float64).mean(axis=(1, 3))
    preview = data_url_image(answer["image"])
    assert preview.shape == (HEIGHT // 2, WIDTH // 2, 3)
    with Image.open(io.BytesIO(jpeg_bytes(np.floor(boxes + 0.5).astype(np.uint8)))) as jpeg:
        expected_preview = np.asarray(jpeg.convert("RGB")).astype(np.float64)
    assert float(np.abs(preview - expected_preview).mean()) <= 1.0, "the input's preview is not the JPEG of the slide's 2x2 box average"


@pytest.fixture(scope="module")
def resizing_bundle_dir(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle with a working size of 512 pixels (long side)."""
    folder = tmp_path_factory.mktemp("resizing") / "tiny512"
    shutil.copytree(tiny_bundle_dir, folder)
    card = json.loads((folder / "model.json").read_text())
    card["input"]["working_size"] = 512
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def test_at_the_working_resolution_it_is_reduced_band_by_band_as_analyze_reduces_it(resizing_bundle_dir: Path) -> None:
    rgb = pixels()
    live = LiveServer(settings_of(resizing_bundle_dir, max_pixels=100_000, max_body_bytes=2**22)).start()
    try:
        response = post(live.url, tiled_tiff(rgb), resolution="working")
    finally:
        live.stop()
    assert response.status_code == 200, response.text
    answer = response.json()
    analyzer = Analyzer(load_bundle(resizing_bundle_dir), memory_budget=2**20)
    shape = analyzer.analysed_shape(HEIGHT, WIDTH, "working")
    assert answer["analysed_size"] == [shape[1], shape[0]] and shape[1] == 512
    assert (answer["input_width"], answer["input_height"]) == (WIDTH, HEIGHT)
    request = AnalysisRequest(samples=int(FORM["samples"]), seed=int(FORM["seed"]))
    want = analyzer.analyze_image(reduced_rgb(ArraySource(rgb), shape), request, input_size=(HEIGHT, WIDTH))
    for got in answer["maps"]:
        assert got["mean"] == pytest.approx(float(want.maps[got["name"]].mean(dtype=np.float64)), rel=1e-5, abs=1e-7), got["name"]


def test_a_truncated_tiled_tiff_is_refused_before_it_runs(tiled: LiveServer, tiled_stores: Path) -> None:
    body = tiled_tiff(pixels(1))
    response = post(tiled.url, body[: len(body) * 3 // 5], mode="job")
    error = assert_error(response, 422, "corrupt_image", "file")
    assert "truncated" in error["message"] or "incomplete" in error["message"]


def test_a_damaged_tile_fails_the_job_naming_it_and_leaves_no_store(tiled: LiveServer, tiled_stores: Path) -> None:
    rgb = pixels(2)
    body = bytearray(tiled_tiff(rgb))
    with tifffile.TiffFile(io.BytesIO(bytes(body))) as tiff:
        page = tiff.pages.first
        offset, count = int(page.dataoffsets[5]), int(page.databytecounts[5])
    body[offset : offset + count] = bytes(count)
    before = set(tiled_stores.glob("*.zarr"))
    status = run_job(tiled.url, bytes(body))
    assert status["state"] == "failed", status
    assert status["error"]["code"] == "corrupt_image"
    found = re.search(r"columns (\d+)-(\d+) cannot be decoded", status["error"]["message"])
    assert found is not None, status["error"]["message"]
    assert int(found[1]) < 6 * TILE and int(found[2]) >= 5 * TILE, "the region named does not hold the damaged tile"
    assert set(tiled_stores.glob("*.zarr")) == before


def test_the_probe_reads_a_tiled_tiff_only_when_allowed() -> None:
    body = tiled_tiff(pixels())
    header = probe_upload(io.BytesIO(body), 100_000, 10**9)
    assert header.tiled and (header.width, header.height) == (WIDTH, HEIGHT)
    with pytest.raises(ImageDecodeError) as refused:
        probe_upload(io.BytesIO(body), 100_000, 0)
    assert refused.value.code is ErrorCode.TOO_MANY_PIXELS
    with pytest.raises(ImageDecodeError) as over:
        probe_upload(io.BytesIO(body), 100_000, 100_000)
    assert over.value.code is ErrorCode.TOO_MANY_PIXELS and "SEGU_MAX_TILED_PIXELS" in over.value.message
    assert not probe_upload(io.BytesIO(body), 10**9, 10**9).tiled
