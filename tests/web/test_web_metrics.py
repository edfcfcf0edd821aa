"""Observability: Prometheus metrics at /metrics, X-Request-ID on every answer, one JSON access-log line per request.

Counters are read by scraping /metrics before and after real requests to an app serving the tiny bundle; the
queue gauges are moved through the app's own :class:`~app.web.admission.Admission`, on its event loop.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from webutil import MAX_BODY, MAX_SAMPLES, HttpResponse, LiveServer, assert_error, encode_image, free_port, random_png, wait_ready, web_settings

from app.io.bundle import Bundle
from app.web.admission import Admission, Reservation
from app.web.factory import create_app
from app.web.metrics import CONTENT_TYPE

MAX_WORK = 100_000  # a 48x64 image with 3 samples fits; 140x140 with 16 samples (333,200 units) does not
KEY = "k3y-for-metrics_0123456789abcdef"
GENERATED = re.compile(r"[0-9a-f]{32}")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def client(tiny_bundle_dir: Path) -> Iterator[TestClient]:
    """The tiny bundle, one running slot and no queue (so one held reservation fills the server)."""
    app = create_app(web_settings(tiny_bundle_dir, max_concurrent=1, max_queue=0, max_work=MAX_WORK))
    with TestClient(app, base_url="http://localhost") as c:
        wait_ready(c)
        yield c


def scrape(client: TestClient, headers: dict[str, str] | None = None) -> Samples:
    """Every sample of GET /metrics, by name and labels."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when the series does not exist yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples) -> Callable[..., float]:
    """``d(name, **labels)``: how much a sample moved between two scrapes."""
    return lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)


def rejections(samples: Samples) -> dict[str, float]:
    """``segu_rejections_total`` by reason."""
    return {dict(labels)["reason"]: v for (name, labels), v in samples.items() if name == "segu_rejections_total"}


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The JSON lines the app wrote on ``app.web.access``."""
    return [json.loads(record.getMessage()) for record in caplog.records if record.name == "app.web.access"]


def analyze(client: TestClient, png: bytes, samples: int, request_id: str | None = None) -> HttpResponse:
    headers = {"X-Request-ID": request_id} if request_id else None
    return client.post("/api/v1/analyze", files={"file": ("a.png", png, "image/png")}, data={"samples": str(samples)}, headers=headers)


def on_loop(client: TestClient, func: Callable[..., Any], *args: Any) -> Any:
    """Run ``func(*args)`` on the app's event loop (admission is event-loop side only)."""
    assert client.portal is not None
    return client.portal.call(func, *args)


def test_an_analysis_moves_its_counters_and_histograms(client: TestClient) -> None:
    before = scrape(client)
    response = analyze(client, random_png(48, 64), samples=3)
    assert response.status_code == 200, response.text
    body = response.json()
    after = scrape(client)
    d = delta(before, after)

    assert d("segu_http_requests_total", method="POST", route="/api/v1/analyze", status="200") == 1
    assert d("segu_http_request_duration_seconds_count", route="/api/v1/analyze") == 1
    assert d("segu_http_request_duration_seconds_sum", route="/api/v1/analyze") >= body["timings"]["inference"]
    assert d("segu_batch_size_count") == 1 and d("segu_batch_size_bucket", le="1.0") == 1 and d("segu_batch_size_sum") == 1
    assert d("segu_inference_seconds_count") == 1
    assert d("segu_inference_seconds_sum") == pytest.approx(body["timings"]["inference"], abs=1e-3)
    assert d("segu_queue_wait_seconds_count") == 1
    assert d("segu_pixels_analysed_total") == body["width"] * body["height"] == 48 * 64
    assert d("segu_mc_samples_total") == 3
    assert rejections(after) == rejections(before)


def test_queue_gauges_are_read_from_admission_at_scrape_time(client: TestClient) -> None:
    assert isinstance(client.app, FastAPI)
    admission: Admission = client.app.state.service.admission
    reservation: Reservation = on_loop(client, admission.reserve, 1234, "test work", "")
    try:
        waiting = scrape(client)
        assert (value(waiting, "segu_queue_waiting"), value(waiting, "segu_analyses_running"), value(waiting, "segu_admitted_work")) == (1, 0, 1234)
        on_loop(client, admission.acquire, reservation)
        running = scrape(client)
        assert (value(running, "segu_queue_waiting"), value(running, "segu_analyses_running"), value(running, "segu_admitted_work")) == (0, 1, 1234)
    finally:
        on_loop(client, admission.release, reservation)
    idle = scrape(client)
    assert (value(idle, "segu_queue_waiting"), value(idle, "segu_analyses_running"), value(idle, "segu_admitted_work")) == (0, 0, 0)
    assert value(idle, "segu_work_budget") == MAX_WORK


def _too_large(client: TestClient, headers: dict[str, str]) -> HttpResponse:
    return client.post("/api/v1/analyze", files={"file": ("a.png", b"\0" * (MAX_BODY + 1), "image/png")}, headers=headers)


def _corrupt(client: TestClient, headers: dict[str, str]) -> HttpResponse:
    return client.post("/api/v1/analyze", files={"file": ("a.png", random_png(64, 64, seed=3)[:300], "image/png")}, headers=headers)


def _too_much_work(client: TestClient, headers: dict[str, str]) -> HttpResponse:
    png = random_png(140, 140)
    return client.post("/api/v1/analyze", files={"file": ("a.png", png, "image/png")}, data={"samples": str(MAX_SAMPLES), "mode": "sync"}, headers=headers)


def _bad_samples(client: TestClient, headers: dict[str, str]) -> HttpResponse:
    return client.post("/api/v1/analyze", files={"file": ("a.png", random_png(8, 8), "image/png")}, data={"samples": "999"}, headers=headers)


def _overloaded(client: TestClient, headers: dict[str, str]) -> HttpResponse:
    assert isinstance(client.app, FastAPI)
    admission: Admission = client.app.state.service.admission
    held = on_loop(client, admission.reserve, 1, "a request holding the only place", "")
    try:
        return analyze(client, random_png(8, 8), 1, headers["X-Request-ID"])
    finally:
        on_loop(client, admission.release, held)


REJECTIONS = [
    # (make the request, status, error code, route label, method)
    (_too_large, 413, "body_too_large", "/api/v1/analyze", "POST"),
    (_corrupt, 422, "corrupt_image", "/api/v1/analyze", "POST"),
    (_too_much_work, 413, "too_much_work", "/api/v1/analyze", "POST"),
    (_bad_samples, 422, "validation_error", "/api/v1/analyze", "POST"),
    (_overloaded, 503, "overloaded", "/api/v1/analyze", "POST"),
    (lambda c, h: c.get("/no/such/page", headers=h), 404, "not_found", "unmatched", "GET"),
    (lambda c, h: c.get("/api/v1/analyze", headers=h), 405, "method_not_allowed", "/api/v1/analyze", "GET"),
    (lambda c, h: c.get("/healthz", headers=h | {"Host": "evil.example"}), 400, "invalid_host", "/healthz", "GET"),
    (lambda c, h: c.post("/api/v1/analyze", headers=h | {"Origin": "http://evil.example"}), 403, "forbidden_origin", "/api/v1/analyze", "POST"),
]


@pytest.mark.parametrize(("make", "status", "code", "route", "method"), REJECTIONS, ids=[case[2] for case in REJECTIONS])
def test_an_error_is_counted_by_its_code_carries_the_id_and_is_logged_once(
    client: TestClient, caplog: pytest.LogCaptureFixture, make: Callable[..., HttpResponse], status: int, code: str, route: str, method: str
) -> None:
    request_id = f"reject-{code}"
    before = scrape(client)
    caplog.set_level(logging.INFO, logger="app.web.access")
    caplog.clear()
    response = make(client, {"X-Request-ID": request_id})
    lines = [line for line in access_lines(caplog) if line["request_id"] == request_id]
    after = scrape(client)

    assert_error(response, status, code)
    assert response.headers["X-Request-ID"] == request_id
    moved = {reason: n - rejections(before).get(reason, 0) for reason, n in rejections(after).items()}
    assert {reason: n for reason, n in moved.items() if n} == {code: 1}
    assert delta(before, after)("segu_http_requests_total", method=method, route=route, status=str(status)) == 1
    assert len(lines) == 1
    assert lines[0]["status"] == status and lines[0]["error"] == code and lines[0]["route"] == route
    assert lines[0]["bytes_out"] == len(response.content)


def test_routes_are_labelled_by_template_not_by_path(client: TestClient) -> None:
    unknown = "0123456789abcdef0123456789abcdef"
    response = client.get(f"/api/v1/analyses/{unknown}/maps/entropy.png")
    assert response.status_code == 404
    text = client.get("/metrics").text
    assert 'route="/api/v1/analyses/{analysis_id}/maps/{name}.png",status="404"' in text
    assert unknown not in text
    assert client.get("/static/no-such-file.js").status_code == 404
    assert 'route="/static/{path}",status="404"' in client.get("/metrics").text


@pytest.mark.parametrize("sent", ["req-42", "0af7651916cd43dd8448eb211c80319c", "trace:1.2_3-x", "a" * 128])
def test_a_sane_request_id_is_echoed(client: TestClient, sent: str) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": sent}).headers["X-Request-ID"] == sent


@pytest.mark.parametrize("sent", ["", "a" * 129, "has space", 'quo"te', "semi;colon", "<script>", "caf\xe9".encode("latin-1")])
def test_an_unsafe_request_id_is_replaced_by_a_new_one(client: TestClient, caplog: pytest.LogCaptureFixture, sent: str | bytes) -> None:
    caplog.set_level(logging.INFO, logger="app.web.access")
    caplog.clear()
    response = client.get("/healthz", headers={b"X-Request-ID": sent} if isinstance(sent, bytes) else {"X-Request-ID": sent})
    assert response.status_code == 200
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])
    assert [line["request_id"] for line in access_lines(caplog)] == [response.headers["X-Request-ID"]]


def test_a_request_without_an_id_gets_a_new_one_each_time(client: TestClient) -> None:
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3 and all(GENERATED.fullmatch(i) for i in ids)


def test_one_json_line_per_request_with_the_analysis(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.web.access")
    caplog.clear()
    response = analyze(client, random_png(48, 64), samples=2, request_id="log-analysis-1")
    health = client.get("/healthz", headers={"X-Request-ID": "log-health-1"})
    body = response.json()
    lines = access_lines(caplog)

    assert [line["request_id"] for line in lines] == ["log-analysis-1", "log-health-1"]
    line, probe = lines
    assert (line["method"], line["route"], line["path"], line["status"], line["client"]) == ("POST", "/api/v1/analyze", "/api/v1/analyze", 200, "testclient")
    assert line["bytes_out"] == len(response.content)
    assert (line["model"], line["samples"], line["pixels"]) == (body["model"], 2, 48 * 64)
    assert 0 <= line["queue_wait_s"] < line["duration_s"]
    assert line["inference_s"] == pytest.approx(body["timings"]["inference"], abs=1e-3)
    assert line["duration_s"] >= line["inference_s"] and "error" not in line
    assert (probe["route"], probe["status"], probe["bytes_out"]) == ("/healthz", 200, len(health.content))
    assert not {"model", "samples", "pixels", "queue_wait_s", "inference_s", "error"} & probe.keys()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])


@pytest.fixture
def make_app(tiny_bundle: Bundle, tiny_bundle_dir: Path) -> Callable[..., FastAPI]:
    """An app of the tiny bundle without warm-up (not started: /metrics needs no model)."""
    return lambda **overrides: create_app(web_settings(tiny_bundle_dir, warmup=False, **overrides), bundle=tiny_bundle)


def test_metrics_need_the_api_key_when_the_server_has_keys(make_app: Callable[..., FastAPI]) -> None:
    client = TestClient(make_app(api_keys=[KEY]), base_url="http://localhost")
    refused = client.get("/metrics", headers={"X-Request-ID": "no-key-1"})
    assert_error(refused, 401, "unauthorized")
    assert refused.headers["X-Request-ID"] == "no-key-1"
    samples = scrape(client, headers={"Authorization": f"Bearer {KEY}"})
    assert rejections(samples) == {"unauthorized": 1}
    assert value(samples, "segu_http_requests_total", method="GET", route="/metrics", status="401") == 1


def test_metrics_can_be_switched_off(make_app: Callable[..., FastAPI], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGU_METRICS", "false")
    client = TestClient(make_app(), base_url="http://localhost")
    response = client.get("/metrics")
    assert_error(response, 404, "not_found")
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])
    assert client.get("/healthz").headers["X-Request-ID"]


def test_an_unexpected_error_carries_the_id_and_is_counted(make_app: Callable[..., FastAPI], caplog: pytest.LogCaptureFixture) -> None:
    """Starlette answers a 500 from outside every middleware: the id still comes back, and the request is counted and logged."""
    app = make_app()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    client = TestClient(app, base_url="http://localhost", raise_server_exceptions=False)
    caplog.set_level(logging.INFO, logger="app.web.access")
    response = client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert_error(response, 500, "internal_error")
    assert response.headers["X-Request-ID"] == "boom-1"
    assert [(line["request_id"], line["status"], line["error"]) for line in access_lines(caplog)] == [("boom-1", 500, "internal_error")]
    samples = scrape(client)
    assert rejections(samples) == {"internal_error": 1}
    assert value(samples, "segu_http_requests_total", method="GET", route="unmatched", status="500") == 1


def test_two_apps_in_one_process_count_apart(make_app: Callable[..., FastAPI]) -> None:
    first, second = (TestClient(make_app(), base_url="http://localhost") for _ in range(2))
    for _ in range(3):
        first.get("/healthz")
    second.get("/healthz")
    assert value(scrape(first), "segu_http_requests_total", method="GET", route="/healthz", status="200") == 3
    assert value(scrape(second), "segu_http_requests_total", method="GET", route="/healthz", status="200") == 1


def _answer_of_a_stalled_request(port: int, sent: bytes) -> tuple[str, dict[str, str], dict[str, Any]]:
    """Send ``sent`` and nothing more; the status line, headers and JSON body the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        sock.sendall(sent)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return status, headers, json.loads(body)


@pytest.mark.slow
def test_serve_logs_json_lines_only_and_counts_slow_clients(tiny_bundle_dir: Path) -> None:
    """``python -m app serve``: stdout holds only the app's JSON lines (uvicorn's access line is off); a trickled head and a
    stalled body get 408s with request ids, and both are counted by reason."""
    port = free_port()
    env = os.environ | {"SEGU_HEADER_TIMEOUT": "0.5", "SEGU_BODY_TIMEOUT": "0.5", "SEGU_WARMUP": "false"}
    command = [sys.executable, "-m", "app", "serve", "--model", str(tiny_bundle_dir), "--device", "cpu", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "serve never became ready"
                try:
                    if httpx.get(f"{url}/readyz", headers={"X-Request-ID": "ready-probe"}).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            health = httpx.get(f"{url}/healthz", headers={"X-Request-ID": "serve-health-1"})
            assert health.headers["X-Request-ID"] == "serve-health-1"

            status, headers, body = _answer_of_a_stalled_request(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            assert status.startswith("HTTP/1.1 408") and body["error"]["code"] == "header_timeout"
            assert GENERATED.fullmatch(headers["x-request-id"])

            stalled = b"POST /api/v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            stalled += b"Content-Length: 1000\r\nX-Request-ID: slow-body-1\r\n\r\n--x\r\n"
            status, headers, body = _answer_of_a_stalled_request(port, stalled)
            assert status.startswith("HTTP/1.1 408") and body["error"]["code"] == "body_timeout"
            assert headers["x-request-id"] == "slow-body-1"

            metrics = httpx.get(f"{url}/metrics")
            assert metrics.headers["content-type"] == CONTENT_TYPE
            counted = {(s.name, s.labels.get("reason")): s.value for f in text_string_to_metric_families(metrics.text) for s in f.samples}
            assert counted[("segu_rejections_total", "header_timeout")] == 1 and counted[("segu_rejections_total", "body_timeout")] == 1
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]  # every stdout line is JSON
    by_id = {line["request_id"]: line for line in lines}
    assert [line["request_id"] for line in lines].count("serve-health-1") == 1 and "ready-probe" in by_id
    assert by_id["serve-health-1"]["status"] == 200 and by_id["serve-health-1"]["route"] == "/healthz"
    assert (by_id["slow-body-1"]["status"], by_id["slow-body-1"]["error"]) == (408, "body_timeout")
    assert [line["route"] for line in lines][-1] == "/metrics"
    assert "ready on cpu" in err  # the app's own INFO messages reach stderr


@pytest.mark.slow
def test_deadline_and_hang_up_are_counted_and_logged(tiny_bundle_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A real server with a 1 s deadline: an analysis far longer than that gets 504 ``timeout``; a client that hangs up
    mid-analysis is answered 499 ``client_disconnected`` (to nobody); both are counted and logged with their ids."""
    settings = web_settings(tiny_bundle_dir, max_samples=4096, max_pixels=300_000, max_work=2_000_000_000, request_timeout=1.0)
    slow = encode_image(np.full((400, 400, 3), 127, dtype=np.uint8), "JPEG")
    form = {"samples": "4096", "resolution": "full"}
    caplog.set_level(logging.INFO, logger="app.web.access")
    server = LiveServer(settings).start()
    try:
        late = httpx.post(f"{server.url}/api/v1/analyze", files={"file": ("a.jpg", slow)}, data=form, headers={"X-Request-ID": "late-1"}, timeout=60)
        assert_error(late, 504, "timeout")
        assert late.headers["X-Request-ID"] == "late-1"

        request = httpx.Request("POST", f"{server.url}/api/v1/analyze", files={"file": ("a.jpg", slow)}, data=form)
        body = request.read()
        head = f"POST /api/v1/analyze HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: {request.headers['content-type']}\r\n"
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(f"{head}Content-Length: {len(body)}\r\nX-Request-ID: gone-1\r\n\r\n".encode() + body)
            time.sleep(0.3)
        deadline = time.monotonic() + 10
        while not [r for r in access_lines(caplog) if r["request_id"] == "gone-1"]:
            assert time.monotonic() < deadline, "the hung-up request was never logged"
            time.sleep(0.05)
        counted = {
            s.labels["reason"]: s.value
            for f in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)
            for s in f.samples
            if s.name == "segu_rejections_total"
        }
    finally:
        server.stop()
    counted.pop("not_ready", None)  # LiveServer polled /readyz (503) while the model loaded
    assert counted == {"timeout": 1, "client_disconnected": 1}
    lines = {line["request_id"]: line for line in access_lines(caplog)}
    assert (lines["late-1"]["status"], lines["late-1"]["error"], lines["late-1"]["samples"]) == (504, "timeout", 4096)
    assert (lines["gone-1"]["status"], lines["gone-1"]["error"], lines["gone-1"]["pixels"]) == (499, "client_disconnected", 400 * 400)
    assert lines["gone-1"]["duration_s"] < 5 and "inference_s" not in lines["gone-1"]


def test_cancellation_checks_count_running_analyses_and_keep_finished_ones() -> None:
    from app.engine.cancel import CancelToken
    from app.web.metrics import Metrics

    metrics = Metrics()

    def value() -> float | None:
        return metrics.registry.get_sample_value("segu_cancellation_checks")

    first, second = CancelToken(), CancelToken()
    metrics.running_checks(first)
    metrics.running_checks(second)
    for _ in range(3):
        first.check()
    second.check()
    assert value() == 4, "running analyses' checks are counted as they happen"
    metrics.finished_checks(first)
    first.check()  # a finished token no longer moves the count
    assert value() == 4
    metrics.finished_checks(second)
    assert value() == 4
