"""Admission control, deadlines, cancellation and slow clients, against a real uvicorn server run with ``serve``'s options.

The slow request is real work: a 400x400 image at full resolution with T = 4096 on the tiny model takes several
seconds of CPU in hundreds of chunks, well past the 2 s deadline even on a fast, quiet machine. Whether a worker still
works is read from the metric of cancellation points passed (``segu_cancellation_checks``, :mod:`app.web.metrics`): it stops
growing once an analysis is stopped.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image
from webutil import LiveServer, assert_error, encode_image, random_png, web_settings

from app.io.decoding import ImageDecodeError
from app.web.admission import Admission, Overloaded, TooMuchWork
from app.web.encoding import analysis_json
from app.web.protocol import uvicorn_options
from app.web.service import AnalysisService
from app.web.settings import Settings
from app.web.uploads import PROBE_BYTES, probe_upload, read_upload

SLOW_SIDE, SLOW_SAMPLES = 400, 4096
REQUEST_TIMEOUT = 2.0
BODY_TIMEOUT = HEADER_TIMEOUT = 1.0
MARGIN = 1.5
HTTP_TIMEOUT = 60.0


class ServeServer(LiveServer):
    """A :class:`LiveServer` with the uvicorn options ``seg-uncertainty serve`` uses (head deadline, size and framing, keep-alive),
    its protocol's refusals counted in the app's metrics as ``serve`` counts them."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        options = uvicorn_options(settings, on_refusal=self.app.state.metrics.reject)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def service(self) -> AnalysisService:
        """The app's analysis service (the server runs in this process)."""
        service: AnalysisService = self.app.state.service
        return service


@pytest.fixture(scope="module")
def gate(tiny_bundle_dir: Path) -> Iterator[ServeServer]:
    """One slot, one queue place, a 2 s deadline, 1 s for a head or a body, room for two slow requests' work but not three."""
    settings = web_settings(
        tiny_bundle_dir,
        max_concurrent=1,
        max_queue=1,
        max_samples=SLOW_SAMPLES,
        max_pixels=300_000,
        max_work=1_400_000_000,
        request_timeout=REQUEST_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        header_timeout=HEADER_TIMEOUT,
    )
    server = ServeServer(settings).start()
    yield server
    server.stop()


def jpeg(side: int, seed: int = 0) -> bytes:
    return encode_image(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8), "JPEG")


def crafted_jpeg(width: int = 4000, height: int = 4000) -> bytes:
    """A 1.5 KB JPEG whose header (SOF0) claims ``width x height``: decoding it would make filler of that size."""
    data = bytearray(jpeg(32))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def post(url: str, image: bytes, **form: object) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/analyze", files={"file": ("a.jpg", image)}, data={k: str(v) for k, v in form.items()}, timeout=HTTP_TIMEOUT)


def post_slow(pool: ThreadPoolExecutor, url: str, side: int = SLOW_SIDE) -> Future[httpx.Response]:
    return pool.submit(post, url, jpeg(side), samples=SLOW_SAMPLES, resolution="full")


def assert_normal_request_succeeds(url: str) -> None:
    started = time.monotonic()
    response = httpx.post(f"{url}/api/v1/analyze", files={"file": ("a.png", random_png())}, data={"samples": "4"}, timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 10


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> float:
    """Poll ``condition`` until it holds; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition never held"
        time.sleep(0.01)
    return time.monotonic() - started


def checks(service: AnalysisService) -> float:
    """The cancellation points passed by every analysis so far, as the server's metrics report them."""
    value = service.metrics.registry.get_sample_value("segu_cancellation_checks")
    assert value is not None
    return value


def assert_idle(service: AnalysisService, settle: float = 1.0) -> None:
    """Nothing admitted, and no analysis passes a cancellation point any more."""
    assert service.admission.admitted == 0 and service.admission.work == 0 and service.admission.running == 0
    before = checks(service)
    time.sleep(settle)
    assert checks(service) == before, "a worker kept computing"


def raw_request(server: LiveServer, image: bytes, **form: object) -> bytes:
    """The bytes of a multipart ``POST /api/v1/analyze``, to send on a socket."""
    request = httpx.Request("POST", f"{server.url}/api/v1/analyze", files={"file": ("a.jpg", image)}, data={k: str(v) for k, v in form.items()})
    body = request.read()
    head = f"POST /api/v1/analyze HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: {request.headers['content-type']}\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def trickle_until_answered(sock: socket.socket, chunks: Iterator[bytes], every: float = 0.2, limit: float = 10.0) -> tuple[bytes, float]:
    """Send the next of ``chunks`` every ``every`` s until the server answers and closes; all it sent, and when it began to answer."""
    started = time.monotonic()
    answered_at = None
    received = b""
    sock.settimeout(every)
    while time.monotonic() - started < limit:
        with contextlib.suppress(OSError):
            sock.sendall(next(chunks))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not data:
            break
        answered_at = answered_at or time.monotonic() - started
        received += data
    assert answered_at is not None, "the server never answered the trickling client"
    assert time.monotonic() - started < limit, "the server did not close the connection"
    return received, answered_at


def json_error(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert b"application/json" in head.lower()
    return status, dict(json.loads(body)["error"])


def test_the_crafted_4000x4000_jpeg_is_refused_from_its_header(default_server: LiveServer) -> None:
    """The 1.5 KB JPEG claiming 4000x4000 (issue 9: 108 s of CPU, +3.7 GB) is 413 at full resolution, before decoding, when it
    must be answered at once (mode=sync; by default such a request runs as a bounded, cancellable job: tests/web/test_web_jobs.py)."""
    data = crafted_jpeg()
    assert len(data) < 2048 and Image.open(io.BytesIO(data)).size == (4000, 4000)
    started = time.monotonic()
    response = post(default_server.url, data, samples=20, resolution="full", mode="sync")
    assert time.monotonic() - started < 1.0
    error = assert_error(response, 413, "too_much_work")
    for part in ("4000x4000", "20 samples", "SEGU_MAX_WORK", "resolution=working"):
        assert part in error["message"], error["message"]
    mask = io.BytesIO()
    Image.new("L", (8, 8)).save(mask, format="PNG")
    evaluated = httpx.post(
        f"{default_server.url}/api/v1/evaluate",
        files={"file": ("a.jpg", data), "mask": ("m.png", mask.getvalue())},
        data={"samples": "20", "resolution": "full", "mode": "sync"},
        timeout=HTTP_TIMEOUT,
    )
    assert_error(evaluated, 413, "too_much_work")
    assert_normal_request_succeeds(default_server.url)


def test_a_full_queue_answers_503_with_retry_after_at_once(gate: ServeServer) -> None:
    service = gate.service
    with ThreadPoolExecutor(2) as pool:
        running = post_slow(pool, gate.url)
        wait_until(lambda: service.admission.running == 1)
        waiting = post_slow(pool, gate.url)
        wait_until(lambda: service.admission.waiting == 1)
        started = time.monotonic()
        refused = post(gate.url, random_png(), samples=4)
        assert time.monotonic() - started < 1.0
        error = assert_error(refused, 503, "overloaded")
        assert "SEGU_MAX_QUEUE" in error["message"] and "before its upload was read" in error["message"]
        assert int(refused.headers["retry-after"]) == service.admission.retry_after() and refused.headers["connection"] == "close"
        assert_error(running.result(), 504, "timeout")
        assert_error(waiting.result(), 504, "timeout")
    assert_idle(service)
    assert_normal_request_succeeds(gate.url)


def test_no_room_in_the_work_budget_answers_503(gate: ServeServer) -> None:
    """A 500x500 request at T = 4096 (1024 M units) fits the 1400 M budget alone, not beside a running 400x400 one (655 M)."""
    service = gate.service
    with ThreadPoolExecutor(1) as pool:
        running = post_slow(pool, gate.url)
        wait_until(lambda: service.admission.running == 1)
        refused = post(gate.url, jpeg(500), samples=SLOW_SAMPLES, resolution="full")
        error = assert_error(refused, 503, "overloaded")
        assert "units of work" in error["message"] and "retry-after" in refused.headers
        assert service.admission.admitted == 1
        assert_error(running.result(), 504, "timeout")
    assert_idle(service)
    assert_normal_request_succeeds(gate.url)


def test_the_deadline_answers_504_and_stops_the_worker(gate: ServeServer) -> None:
    service = gate.service
    before = checks(service)
    started = time.monotonic()
    response = post(gate.url, jpeg(SLOW_SIDE), samples=SLOW_SAMPLES, resolution="full")
    elapsed = time.monotonic() - started
    error = assert_error(response, 504, "timeout")
    assert "SEGU_REQUEST_TIMEOUT" in error["message"]
    assert REQUEST_TIMEOUT <= elapsed < REQUEST_TIMEOUT + MARGIN
    assert checks(service) - before > 10, "the analysis never ran"
    assert_idle(service)
    assert_normal_request_succeeds(gate.url)


def test_a_client_that_goes_away_stops_its_work_running_or_waiting(gate: ServeServer) -> None:
    """Closing the socket while the analysis runs stops it within a second; closing it while queued drops it from the queue."""
    service = gate.service
    with socket.create_connection(("127.0.0.1", gate.port)) as sock:
        sock.sendall(raw_request(gate, jpeg(SLOW_SIDE), samples=SLOW_SAMPLES, resolution="full"))
        wait_until(lambda: service.admission.running == 1 and checks(service) > 0)
    assert wait_until(lambda: service.admission.admitted == 0, timeout=5.0) < 1.0
    assert_idle(service)
    assert_normal_request_succeeds(gate.url)

    with ThreadPoolExecutor(1) as pool:
        running = post_slow(pool, gate.url)
        wait_until(lambda: service.admission.running == 1)
        with socket.create_connection(("127.0.0.1", gate.port)) as sock:
            sock.sendall(raw_request(gate, jpeg(SLOW_SIDE, seed=1), samples=SLOW_SAMPLES, resolution="full"))
            wait_until(lambda: service.admission.waiting == 1)
        assert wait_until(lambda: service.admission.waiting == 0, timeout=5.0) < 1.0
        assert service.admission.running == 1
        assert_error(running.result(), 504, "timeout")
    assert_idle(service)


def test_reading_decoding_and_encoding_happen_inside_the_gate(gate: ServeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.web.routes.analyze as route
    import app.web.service as service_module

    service = gate.service
    seen: dict[str, tuple[int, str]] = {}
    read, encode = service_module.read_upload, analysis_json

    def reading(*args: Any) -> Any:
        seen["read"] = (service.admission.running, threading.current_thread().name)
        return read(*args)

    def encoding(*args: Any) -> Any:
        seen["encode"] = (service.admission.running, threading.current_thread().name)
        return encode(*args)

    monkeypatch.setattr(service_module, "read_upload", reading)
    monkeypatch.setattr(route, "analysis_json", encoding)
    assert_normal_request_succeeds(gate.url)
    loop_thread = gate.thread.name
    assert seen["read"][0] == 1 and seen["encode"][0] == 1, seen
    assert seen["read"][1] != loop_thread and seen["encode"][1] != loop_thread, seen


def test_a_body_that_trickles_in_gets_408_and_the_connection_is_closed(gate: ServeServer) -> None:
    request = raw_request(gate, jpeg(64), samples=2)
    head_end = request.index(b"\r\n\r\n") + 4
    with socket.create_connection(("127.0.0.1", gate.port)) as sock:
        sock.sendall(request[: head_end + 10])
        received, answered_at = trickle_until_answered(sock, (request[i : i + 5] for i in range(head_end + 10, len(request), 5)))
    assert answered_at < BODY_TIMEOUT + MARGIN
    status, error = json_error(received)
    assert status == 408 and error["code"] == "body_timeout", error
    assert_normal_request_succeeds(gate.url)


def test_a_head_that_trickles_in_gets_408_and_the_connection_is_closed(gate: ServeServer) -> None:
    with socket.create_connection(("127.0.0.1", gate.port)) as sock:
        sock.sendall(f"POST /api/v1/analyze HTTP/1.1\r\nHost: 127.0.0.1:{gate.port}\r\n".encode())
        received, answered_at = trickle_until_answered(sock, itertools.repeat(b"X-Slow: 1\r\n"))
    assert answered_at < HEADER_TIMEOUT + MARGIN
    status, error = json_error(received)
    assert status == 408 and error["code"] == "header_timeout", error
    assert_normal_request_succeeds(gate.url)


def test_admission_counts_work_refuses_and_serves_in_arrival_order() -> None:
    async def scenario() -> list[int]:
        admission = Admission(max_concurrent=1, max_queue=2, max_work=100)
        with pytest.raises(TooMuchWork, match="101 units of work"):
            admission.reserve(101, "101 pixels", "send fewer")
        first = admission.reserve(50, "a", "")
        await admission.acquire(first)
        with pytest.raises(Overloaded, match="50 of its 100"):
            admission.reserve(51, "b", "")
        order: list[int] = []

        async def queued(number: int) -> None:
            reservation = admission.reserve(20, str(number), "")
            await admission.acquire(reservation)
            order.append(number)
            await anyio.sleep(0.01)
            admission.release(reservation)

        async with anyio.create_task_group() as tg:
            for number in (1, 2):
                tg.start_soon(queued, number)
                await anyio.sleep(0.01)
            assert (admission.running, admission.waiting, admission.work) == (1, 2, 90)
            with pytest.raises(Overloaded, match="SEGU_MAX_QUEUE") as full:
                admission.reserve(1, "c", "")
            assert full.value.headers is not None and int(full.value.headers["Retry-After"]) >= 1
            admission.release(first)
        assert (admission.admitted, admission.running, admission.work) == (0, 0, 0)
        return order

    assert anyio.run(scenario) == [1, 2]


def test_the_header_probe_reads_past_its_prefix_only_when_the_header_goes_on() -> None:
    """A JPEG with over a MiB of comments before its frame header is still weighed right; the file is read from its start later."""
    plain = jpeg(40)
    comments = b"".join(b"\xff\xfe" + (60_002).to_bytes(2, "big") + bytes(60_000) for _ in range(20))
    padded = plain[:2] + comments + plain[2:]
    assert len(padded) > PROBE_BYTES
    for data in (plain, padded):
        file = io.BytesIO(data)
        assert tuple(probe_upload(file, 10_000))[:3] == ("JPEG", 40, 40)
        assert read_upload(file) == data
    with pytest.raises(ImageDecodeError):
        probe_upload(io.BytesIO(padded[: PROBE_BYTES + 10]), 10_000)
