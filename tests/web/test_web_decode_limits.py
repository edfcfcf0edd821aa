"""Decoding inside the work budget, the gate and the deadline (issue 20), against live uvicorn servers.

The 1000-scan progressive JPEG is refused at once and the next request is answered; with the scan cap out of the way
it is refused by the work budget (its decode's cost named), stopped by the deadline or by the client leaving within a
second, and two such decodes do not pass the gate together; a decode whose cost alone is over the budget gets 413; the
probe counts the scans past its first MiB.
"""

from __future__ import annotations

import io
import socket
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from webutil import LiveServer, assert_error, encode_image, random_png, web_settings

import app.io.containers as containers
from app.defaults import MAX_BODY_BYTES, MAX_PIXELS
from app.io.decoding import ImageDecodeError, probe_image
from app.request import AnalysisRequest
from app.web.service import AnalysisService
from app.web.uploads import PROBE_BYTES, probe_upload
from app.web.work_estimate import estimate_work

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hostile_corpus import progressive_scan_bomb, segment, truncated_png

BAR_SECONDS = 3.0
HTTP_TIMEOUT = 60.0


def service_of(server: LiveServer) -> AnalysisService:
    service: AnalysisService = server.app.state.service
    return service


def post(server: LiveServer, data: bytes, **form: str) -> tuple[httpx.Response, float]:
    """The answer to an upload of ``data`` and the seconds it took."""
    started = time.monotonic()
    response = httpx.post(f"{server.url}/api/v1/analyze", files={"file": ("upload.jpg", data)}, data=form, timeout=HTTP_TIMEOUT)
    return response, time.monotonic() - started


def assert_next_request_answered(server: LiveServer) -> None:
    response, seconds = post(server, random_png(), samples="2")
    assert response.status_code == 200, response.text
    assert seconds <= BAR_SECONDS


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition never held"
        time.sleep(0.01)
    return time.monotonic() - started


def real_limits(bundle: Path, **overrides: Any) -> Any:
    """The tiny bundle at a 32-px working size (analyses cost little, as the default model's at its working size) with the real
    upload limits (40 MP, 50 MiB), the default budget and deadline, unless overridden."""
    return web_settings(bundle, **({"max_pixels": MAX_PIXELS, "max_body_bytes": MAX_BODY_BYTES, "max_concurrent": 1} | overrides))


@pytest.fixture(scope="module")
def server(working_bundle_dir: Path) -> Iterator[LiveServer]:
    live = LiveServer(real_limits(working_bundle_dir)).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """The attacker's file: 1000 successive-approximation scans of a 6000x6000 grey image (22 s in libjpeg)."""
    return progressive_scan_bomb(6000, 6000, 1000)


@pytest.fixture
def no_scan_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers run in this process: lift the scan cap so that what stands behind it is tested."""
    monkeypatch.setattr(containers, "MAX_JPEG_SCANS", 5000)


def test_the_scan_bomb_is_refused_at_once_and_the_next_request_answered(server: LiveServer, bomb: bytes) -> None:
    """The bar: with the default deadline and mode, the bomb's request ends in <= 3 s, and a normal one right after gets 200 in <= 3 s."""
    response, seconds = post(server, bomb)
    error = assert_error(response, 422, "corrupt_image")
    assert "1001 scans" in error["message"]
    assert seconds <= BAR_SECONDS
    assert_next_request_answered(server)
    response, _ = post(server, truncated_png())
    assert_error(response, 422, "corrupt_image")


@pytest.mark.usefixtures("no_scan_cap")
def test_past_the_cap_the_work_budget_refuses_the_bomb_naming_its_decoding(server: LiveServer, bomb: bytes) -> None:
    response, seconds = post(server, bomb, mode="sync")
    error = assert_error(response, 413, "too_much_work")
    assert "decoding the 6000x6000 JPEG (L, 1001 scans" in error["message"]
    assert "its decoding alone is over the budget" in error["message"]
    assert seconds <= BAR_SECONDS
    assert_next_request_answered(server)


@pytest.mark.slow
@pytest.mark.usefixtures("no_scan_cap")
def test_the_deadline_stops_an_admitted_costly_decode_within_a_second(working_bundle_dir: Path, bomb: bytes) -> None:
    """Admitted (a budget that holds it) with a 1 s deadline: 504 within a second of the deadline, the gate empty, the next request served."""
    live = LiveServer(real_limits(working_bundle_dir, max_work=10**12, request_timeout=1.0)).start()
    try:
        response, seconds = post(live, bomb, mode="sync")
        assert_error(response, 504, "timeout")
        assert seconds < 1.0 + 1.0
        assert service_of(live).admission.admitted == 0
        assert_next_request_answered(live)
    finally:
        live.stop()


@pytest.mark.slow
@pytest.mark.usefixtures("no_scan_cap")
def test_a_client_that_leaves_stops_its_costly_decode_within_a_second(working_bundle_dir: Path, bomb: bytes) -> None:
    live = LiveServer(real_limits(working_bundle_dir, max_work=10**12)).start()
    try:
        service = service_of(live)
        request = httpx.Request("POST", f"{live.url}/api/v1/analyze", files={"file": ("bomb.jpg", bomb)}, data={"mode": "sync"})
        body = request.read()
        head = f"POST /api/v1/analyze HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\nContent-Type: {request.headers['content-type']}\r\n"
        with socket.create_connection(("127.0.0.1", live.port)) as sock:
            sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            wait_until(lambda: service.admission.running == 1)
            time.sleep(0.5)
        assert wait_until(lambda: service.admission.admitted == 0, timeout=30.0) < 1.0
        assert_next_request_answered(live)
    finally:
        live.stop()


@pytest.mark.slow
@pytest.mark.usefixtures("no_scan_cap")
def test_costly_decodes_pass_the_same_gate(working_bundle_dir: Path, bomb: bytes) -> None:
    """Room for one bomb's work but not two: while one decodes (two slots free), the second is 503 'overloaded'."""
    settings = real_limits(working_bundle_dir, max_concurrent=2, request_timeout=3.0)
    live = LiveServer(settings).start()
    try:
        service = service_of(live)
        header = probe_image(bomb)
        units = estimate_work(service.analyzer, 10**12, header.width, header.height, AnalysisRequest(samples=4), header).units
        service.admission.max_work = units * 3 // 2
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, live, bomb, mode="sync", samples="4")
            wait_until(lambda: service.admission.running == 1)
            response, _ = post(live, bomb, mode="sync", samples="4")
            error = assert_error(response, 503, "overloaded")
            assert "decoding the 6000x6000 JPEG" in error["message"]
            assert_error(first.result()[0], 504, "timeout")
    finally:
        live.stop()


def test_a_decode_over_the_budget_alone_gets_413(working_bundle_dir: Path) -> None:
    """A 2000x2000 PNG's decode alone is over a 20,000-unit budget (its 32x32 analysis is not); a small PNG fits."""
    live = LiveServer(real_limits(working_bundle_dir, max_work=20_000)).start()
    try:
        big = encode_image(np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8))
        response, _ = post(live, big, mode="sync", samples="4")
        error = assert_error(response, 413, "too_much_work")
        assert "32x32 analysed pixels" in error["message"] and "+ " in error["message"]
        assert "decoding the 2000x2000 PNG (RGB; " in error["message"] and "its decoding alone is over the budget" in error["message"]
        response, _ = post(live, random_png(), mode="sync", samples="4")
        assert response.status_code == 200, response.text
    finally:
        live.stop()


def test_the_probe_counts_the_scans_past_its_first_mib() -> None:
    """Comments of 1.5 MiB between the scans push most of them past the probe's first MiB: they are counted all the same."""
    filler = segment(0xFE, bytes(65_000)) * 24
    for scans, refused in ((20, False), (80, True)):
        data = progressive_scan_bomb(64, 48, scans)
        second = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
        data = data[:second] + filler + data[second:]
        assert len(data) > PROBE_BYTES
        if refused:
            with pytest.raises(ImageDecodeError) as info:
                probe_upload(io.BytesIO(data), MAX_PIXELS)
            assert info.value.code == "corrupt_image" and "81 scans" in info.value.message
        else:
            header = probe_upload(io.BytesIO(data), MAX_PIXELS)
            assert (header.scans, header.file_bytes) == (scans + 1, len(data))
