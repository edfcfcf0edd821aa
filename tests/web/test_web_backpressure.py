"""Back-pressure that tells the truth: Retry-After from the measured service time, and a full queue refused before any upload byte.

The Retry-After figures are checked analytically with a fake clock (``Admission(clock=...)``); the early refusal against a
real uvicorn server run with ``serve``'s options, one slot and no queue, while a slow analysis (a 400x400 JPEG at full
resolution with T = 4096: seconds of CPU) holds the slot.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from test_web_admission import SLOW_SAMPLES, SLOW_SIDE, ServeServer, jpeg, raw_request, wait_until
from test_web_framing import Reply, parse_replies, read_until_closed
from webutil import assert_error, random_png, web_settings

from app.web.admission import INITIAL_SERVICE_SECONDS, RETRY_AFTER_MAX, SERVICE_TIME_WEIGHT, Admission, Overloaded, Reservation
from app.web.early_refusal import asked_mode, prefers_async
from app.web.jobs import JobMode
from app.web.security.headers import SECURITY_HEADERS

TEN_MIB = 10 * 2**20
ANSWER_WITHIN = 2.0


class FakeClock:
    """A clock that moves only when told (or by ``step`` at every reading)."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 100.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now - self.step


def served(admission: Admission, clock: FakeClock, seconds: float) -> None:
    """One request that holds a slot for ``seconds`` of the fake clock."""

    async def run() -> None:
        reservation = admission.reserve(1, "one", "")
        await admission.acquire(reservation)
        clock.now += seconds
        admission.release(reservation, admission.held_seconds(reservation))

    anyio.run(run)


def test_retry_after_is_the_measured_service_time_times_the_position_over_the_slots() -> None:
    clock = FakeClock()
    admission = Admission(max_concurrent=2, max_queue=3, max_work=100, clock=clock)
    assert admission.service_seconds == INITIAL_SERVICE_SECONDS and admission.retry_after() == 1  # ceil(1.0 x 1 / 2)
    served(admission, clock, 3.5)
    assert admission.service_seconds == 3.5 and admission.measured == 1  # the first measurement replaces the guess
    served(admission, clock, 1.5)
    mean = 3.5 + SERVICE_TIME_WEIGHT * (1.5 - 3.5)
    assert admission.service_seconds == pytest.approx(mean)
    held = [admission.reserve(1, "held", "") for _ in range(5)]

    async def take_two_slots() -> None:
        for reservation in held[:2]:
            await admission.acquire(reservation)

    anyio.run(take_two_slots)
    assert (admission.running, admission.waiting) == (2, 3)
    with pytest.raises(Overloaded) as full:
        admission.check_room()
    assert full.value.headers is not None
    assert int(full.value.headers["Retry-After"]) == math.ceil(mean * 4 / 2) == 7  # 4th in line for 2 slots
    with pytest.raises(Overloaded) as by_reserve:
        admission.reserve(1, "one more", "")
    assert by_reserve.value.headers == full.value.headers
    admission.release(held[4])  # left while waiting: no service time
    assert admission.service_seconds == pytest.approx(mean) and admission.measured == 2
    assert admission.retry_after() == math.ceil(mean * 3 / 2) == 5


@pytest.mark.parametrize(
    ("seconds", "expected"), [(0.01, 1), (0.5, 1), (0.9, 2), (1.01, 3), (29.5, 59), (30.0, 60), (31.0, RETRY_AFTER_MAX), (1e6, RETRY_AFTER_MAX)]
)
def test_retry_after_is_clamped_to_one_to_sixty_seconds(seconds: float, expected: int) -> None:
    clock = FakeClock()
    admission = Admission(max_concurrent=1, max_queue=1, max_work=10, clock=clock)
    served(admission, clock, seconds)
    first = admission.reserve(1, "a", "")
    anyio.run(admission.acquire, first)
    admission.reserve(1, "b", "")
    assert admission.full and admission.retry_after() == expected  # 2nd in line for 1 slot: ceil(2 x seconds)


@pytest.fixture(scope="module")
def no_queue(tiny_bundle_dir: Path) -> Iterator[ServeServer]:
    """One running slot and no queue (a running analysis makes the queue full), jobs on, room for a 10 MiB body."""
    settings = web_settings(
        tiny_bundle_dir,
        max_concurrent=1,
        max_queue=0,
        max_samples=SLOW_SAMPLES,
        max_pixels=300_000,
        max_work=1_400_000_000,
        max_body_bytes=16 * 2**20,
        request_timeout=60.0,
        max_jobs=4,
    )
    server = ServeServer(settings).start()
    yield server
    server.stop()


@pytest.fixture
def slow(no_queue: ServeServer) -> Iterator[socket.socket]:
    """A slow analysis holding the only slot, on a raw connection; closing it stops the analysis."""
    admission = no_queue.service.admission
    sock = socket.create_connection(("127.0.0.1", no_queue.port))
    sock.sendall(raw_request(no_queue, jpeg(SLOW_SIDE), samples=SLOW_SAMPLES, resolution="full", mode="sync"))
    wait_until(lambda: admission.running == 1)
    assert admission.full
    yield sock
    sock.close()
    wait_until(lambda: admission.admitted == 0)


def head_only(server: ServeServer, path: str, declared: int, *extra: str) -> tuple[Reply | None, bool, float]:
    """Send only the head of a multipart POST declaring a ``declared``-byte body; the answer (if any), whether the server closed, when."""
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", "Content-Type: multipart/form-data; boundary=xyz", f"Content-Length: {declared}", *extra]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        started = time.monotonic()
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received, closed = read_until_closed(sock, limit=ANSWER_WITHIN)
        elapsed = time.monotonic() - started
    replies, _ = parse_replies(received)
    return (replies[0] if replies else None), closed, elapsed


@pytest.mark.parametrize("path", ["/api/v1/analyze", "/api/v1/evaluate"])
def test_a_10_mib_upload_to_a_full_queue_gets_503_before_its_body_is_sent(no_queue: ServeServer, slow: socket.socket, path: str) -> None:
    reply, closed, elapsed = head_only(no_queue, path, TEN_MIB)
    assert reply is not None, "no answer before the body"
    assert reply.status == 503 and closed and elapsed < ANSWER_WITHIN
    error = reply.error()
    assert error["code"] == "overloaded"
    for part in ("SEGU_MAX_QUEUE", "before its upload was read", "Prefer: respond-async"):
        assert part in error["message"], error["message"]
    assert reply.headers["connection"] == "close" and int(reply.headers["retry-after"]) == no_queue.service.admission.retry_after()
    assert all(reply.headers[name.lower()] == value for name, value in SECURITY_HEADERS.items())


def test_clients_still_sending_their_upload_read_the_early_503(no_queue: ServeServer, slow: socket.socket) -> None:
    """The server half-closes and drains instead of closing under the upload: a reset would wipe the 503 from the client's buffer
    (an asynchronous httpx client, which sends head and body in separate writes, then reported ReadError for nearly every one)."""
    body = bytes(200_000)

    async def clients() -> list[int | str]:
        async def one(client: httpx.AsyncClient) -> int | str:
            try:
                response = await client.post(f"{no_queue.url}/api/v1/analyze", files={"file": ("a.png", body)})
            except httpx.TransportError as exc:
                return type(exc).__name__
            return response.status_code

        async with httpx.AsyncClient(timeout=30) as client:
            return [status for batch in range(5) for status in await asyncio.gather(*(one(client) for _ in range(8)))]

    assert asyncio.run(clients()) == [503] * 40


def test_with_room_in_the_queue_the_same_head_waits_for_its_body(no_queue: ServeServer) -> None:
    """The control: nothing running, the head of a 10 MiB upload gets no answer (the server reads the body it was promised)."""
    assert not no_queue.service.admission.full
    reply, closed, _ = head_only(no_queue, "/api/v1/analyze", TEN_MIB)
    assert reply is None and not closed


def test_prefer_respond_async_gets_202_while_the_queue_is_full(no_queue: ServeServer, slow: socket.socket) -> None:
    admission = no_queue.service.admission
    files = {"file": ("a.png", random_png())}
    refused = httpx.post(f"{no_queue.url}/api/v1/analyze", files=files, data={"samples": "2"}, timeout=30)
    assert_error(refused, 503, "overloaded")
    response = httpx.post(f"{no_queue.url}/api/v1/analyze", files=files, data={"samples": "2"}, headers={"Prefer": "respond-async"}, timeout=30)
    assert response.status_code == 202, response.text
    assert response.headers["preference-applied"] == "respond-async"
    status_url = f"{no_queue.url}{response.headers['location']}"
    assert httpx.get(status_url, timeout=30).json()["state"] == "queued" and admission.running == 1
    measured = admission.measured
    slow.close()
    wait_until(lambda: httpx.get(status_url, timeout=30).json()["state"] == "done", timeout=30)
    result = httpx.get(f"{status_url}/result", timeout=30)
    assert result.status_code == 200 and result.json()["samples"] == 2
    assert admission.measured == measured + 2  # the slow analysis and the job each report their service time


def test_prefer_is_refused_early_too_once_the_job_store_is_full(no_queue: ServeServer, slow: socket.socket) -> None:
    files = {"file": ("a.png", random_png())}
    jobs = []
    for _ in range(no_queue.service.jobs.max_jobs):
        response = httpx.post(f"{no_queue.url}/api/v1/analyze", files=files, data={"samples": "1"}, headers={"Prefer": "respond-async"}, timeout=30)
        assert response.status_code == 202, response.text
        jobs.append(f"{no_queue.url}{response.headers['location']}")
    try:
        reply, closed, _ = head_only(no_queue, "/api/v1/analyze", TEN_MIB, "Prefer: respond-async")
        assert reply is not None and reply.status == 503 and closed
        assert "SEGU_MAX_JOBS" in reply.error()["message"]
    finally:
        for url in jobs:
            assert httpx.delete(url, timeout=30).json()["state"] == "cancelled"


@pytest.mark.parametrize(
    ("values", "mode", "jobs_on", "prefers", "expected"),
    [
        (["respond-async"], "auto", True, True, "job"),
        (["return=minimal, Respond-Async ; foo=1"], "auto", True, True, "job"),
        (["wait=5", "respond-async"], "auto", True, True, "job"),
        (["respond-async"], "sync", True, True, "sync"),
        (["respond-async"], "auto", False, True, "auto"),
        (["respond-asynchronously", "async"], "auto", True, False, "auto"),
        (None, "auto", True, False, "auto"),
    ],
)
def test_prefer_respond_async_asks_for_a_job_only_when_mode_is_left_at_auto(
    values: list[str] | None, mode: JobMode, jobs_on: bool, prefers: bool, expected: str
) -> None:
    assert prefers_async(values) == prefers
    assert asked_mode(mode, values, jobs_on) == expected


def test_an_explicit_mode_wins_over_the_preference(no_queue: ServeServer) -> None:
    files = {"file": ("a.png", random_png())}
    response = httpx.post(f"{no_queue.url}/api/v1/analyze", files=files, data={"mode": "sync"}, headers={"Prefer": "respond-async"}, timeout=30)
    assert response.status_code == 200 and "preference-applied" not in response.headers


def test_the_service_reports_each_requests_slot_time_to_the_gate(no_queue: ServeServer) -> None:
    """With a clock that moves 7 s at each reading, a request is admitted at t, runs from t + 7 and ends at t + 14: 7 s of service."""
    admission = no_queue.service.admission
    real_clock = admission.clock
    admission.measured = 0
    try:
        for step, mean in ((7.0, 7.0), (2.0, 7.0 + SERVICE_TIME_WEIGHT * (2.0 - 7.0))):
            admission.clock = FakeClock(step=step)
            response = httpx.post(f"{no_queue.url}/api/v1/analyze", files={"file": ("a.png", random_png())}, data={"samples": "2"}, timeout=30)
            assert response.status_code == 200
            assert admission.service_seconds == pytest.approx(mean)
    finally:
        admission.clock = real_clock
    assert admission.measured == 2 and admission.retry_after() == math.ceil(6.0 * 1 / 1)


def test_a_reservation_that_never_ran_reports_no_service_time() -> None:
    admission = Admission(max_concurrent=1, max_queue=1, max_work=10, clock=FakeClock())
    reservation = admission.reserve(1, "a", "")
    assert isinstance(reservation, Reservation) and admission.held_seconds(reservation) is None
