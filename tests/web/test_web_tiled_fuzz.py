"""Damaged tiled TIFFs beyond ``max_pixels`` through a real server: byte flips in the directory and the tiles, and
truncations, at both resolutions — every answer is a 200 or a 4xx naming the problem, never a 5xx, and the server keeps
answering (seeded, so a failure reproduces)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile
from webutil import LiveServer, web_settings

HEIGHT, WIDTH, TILE = 320, 400, 64
MUTANTS = 120


@pytest.fixture(scope="module")
def server(tiny_bundle_dir: Path) -> Iterator[LiveServer]:
    settings = web_settings(tiny_bundle_dir, max_pixels=100_000, max_body_bytes=2**22, memory_budget=2**22, stream_pixels=10**9, cache_entries=2)
    live = LiveServer(settings).start()
    yield live
    live.stop()


def slide() -> bytes:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (HEIGHT // 16, WIDTH // 16, 3), dtype=np.uint8)
    rgb = np.repeat(np.repeat(small, 16, axis=0), 16, axis=1)
    out = io.BytesIO()
    tifffile.imwrite(out, rgb, tile=(TILE, TILE), compression="zlib", photometric="rgb")
    return out.getvalue()


def mutants(body: bytes, count: int) -> Iterator[bytes]:
    """Flips of 1-8 bytes (half in the first 1 KiB: the header and, for tifffile's layout, often the directory; half
    anywhere), and truncations."""
    rng = np.random.default_rng(7)
    with tifffile.TiffFile(io.BytesIO(body)) as tiff:
        directory = int(tiff.pages.first.offset)
    for k in range(count):
        data = bytearray(body)
        kind = k % 3
        if kind == 2:
            yield bytes(data[: int(rng.integers(8, len(data)))])
            continue
        lo, hi = (directory, min(len(data), directory + 1024)) if kind == 0 else (0, len(data))
        for _ in range(int(rng.integers(1, 9))):
            data[int(rng.integers(lo, hi))] = int(rng.integers(0, 256))
        yield bytes(data)


def test_damaged_tiled_tiffs_get_a_4xx_or_an_answer_never_a_5xx(server: LiveServer) -> None:
    body = slide()
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for k, data in enumerate(mutants(body, MUTANTS)):
            form = {"resolution": "full" if k % 2 else "working", "samples": "2", "mode": "sync"}
            response = client.post("/api/v1/analyze", files={"file": ("slide.tif", data)}, data=form)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (k, response.status_code, response.text[:300])
            if response.status_code >= 400:
                assert response.json()["error"]["code"], response.text
        assert client.post("/api/v1/analyze", files={"file": ("slide.tif", body)}, data={"samples": "2"}).status_code == 200
    assert statuses.get(200, 0) > 0 and sum(v for s, v in statuses.items() if s >= 400) > MUTANTS // 3, statuses
