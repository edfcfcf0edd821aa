"""Long analyses as jobs (app/web/jobs.py), against real uvicorn servers: 202 instead of 413, rising progress by polling and
server-sent events, the synchronous answer by id, cancel, the bounded store, and 413 for what no job can hold.

The tiny model with a 1 MiB memory budget analyses a 300x300 JPEG at full resolution in 169 sliding-window tiles, so a
job of 32 samples takes a second or two (progress is seen rising) and one of 512 samples several seconds (to cancel).
Whether a worker still works is read from the metric of cancellation points passed (``segu_cancellation_checks``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from webutil import LiveServer, assert_error, encode_image, labelled_scene, mask_png, web_settings

from app.web.schemas.jobs import JobStatus
from app.web.service import AnalysisService

SIDE = 300
QUICK, SLOW = 32, 512
MAX_WORK = 100_000  # a 300x300 full-resolution analysis is over it at any number of samples
MAX_JOB_WORK = 50_000_000  # 300 x 300 x (512 + 1) = 46.2 M fits; 1024 samples do not
MAX_JOB_PIXELS = 200_000
TIMEOUT = 60.0


def settings_of(bundle_dir: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "max_pixels": 300_000,
        "max_body_bytes": 2**20,
        "max_samples": 4096,
        "max_work": MAX_WORK,
        "max_job_work": MAX_JOB_WORK,
        "max_job_pixels": MAX_JOB_PIXELS,
        "memory_budget": 2**20,
        "max_concurrent": 1,
        "max_queue": 4,
        "max_jobs": 3,
    }
    return web_settings(bundle_dir, **(values | overrides))


@pytest.fixture(scope="module")
def server(tiny_bundle_dir: Path) -> Iterator[LiveServer]:
    """Jobs on: one slot, at most three jobs kept."""
    live = LiveServer(settings_of(tiny_bundle_dir)).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def roomy(tiny_bundle_dir: Path) -> Iterator[LiveServer]:
    """The same model and limits with a synchronous budget that holds everything: the reference answers."""
    live = LiveServer(settings_of(tiny_bundle_dir, max_work=10**12)).start()
    yield live
    live.stop()


def photo(side: int = SIDE, seed: int = 0) -> bytes:
    return encode_image(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8), "JPEG")


def post(url: str, image: bytes, **form: object) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/analyze", files={"file": ("a.jpg", image)}, data={k: str(v) for k, v in form.items()}, timeout=TIMEOUT)


def submit(url: str, image: bytes, **form: object) -> dict[str, Any]:
    """POST and expect 202: the job's status."""
    response = post(url, image, **form)
    assert response.status_code == 202, response.text
    status = JobStatus.model_validate(response.json())
    assert response.headers["location"] == status.status_url == f"/api/v1/jobs/{status.job_id}"
    return dict(response.json())


def status_of(url: str, job: dict[str, Any]) -> dict[str, Any]:
    response = httpx.get(f"{url}{job['status_url']}", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition never held"
        time.sleep(0.02)


def finished(url: str, job: dict[str, Any]) -> dict[str, Any]:
    """Poll the job until it finishes; its last status."""
    last: dict[str, Any] = {}

    def done() -> bool:
        last.update(status_of(url, job))
        return last["state"] in ("done", "failed", "cancelled")

    wait_until(done)
    return last


def checks(server: LiveServer) -> float:
    service: AnalysisService = server.app.state.service
    value = service.metrics.registry.get_sample_value("segu_cancellation_checks")
    assert value is not None
    return value


def assert_idle(server: LiveServer, settle: float = 1.0) -> None:
    """Nothing admitted, and no analysis passes a cancellation point any more."""
    admission = server.app.state.service.admission
    wait_until(lambda: admission.admitted == 0, timeout=5.0)
    assert admission.work == 0 and admission.running == 0
    before = checks(server)
    time.sleep(settle)
    assert checks(server) == before, "a worker kept computing"


def events(url: str, job: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ``status`` event of the job's event stream, until the server ends it."""
    received = []
    with httpx.stream("GET", f"{url}{job['events_url']}", timeout=TIMEOUT) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                assert kind == "status"
                received.append(json.loads(line.removeprefix("data: ")))
    return received


def comparable(body: bytes) -> dict[str, Any]:
    """An analysis answer without what differs between two runs of the same analysis (its id, its timings)."""
    answer = json.loads(body)
    answer.pop("timings", None)
    return dict(json.loads(json.dumps(answer).replace(answer["analysis_id"], "ID")))


def test_over_the_budget_a_request_runs_as_a_job_whose_progress_rises_to_the_synchronous_answer(server: LiveServer, roomy: LiveServer) -> None:
    image = photo()
    job = submit(server.url, image, samples=QUICK, resolution="full", seed=3, raw="true")
    assert job["state"] in ("queued", "running") and job["kind"] == "analyze" and job["model"] == "tiny"
    assert MAX_WORK < SIDE * SIDE * (QUICK + 1) < job["work"] < SIDE * SIDE * (QUICK + 2) and "300x300" in job["work_text"]  # + its decode
    stream = events(server.url, job)
    assert stream[-1]["state"] == "done" and stream[-1]["progress"] == 1.0
    progress = [event["progress"] for event in stream]
    assert progress == sorted(progress)
    assert len({p for p in progress if 0 < p < 1}) >= 3, progress
    running = [event for event in stream if event["state"] == "running" and event["total"]]
    assert running and all(event["unit"] == "tile" and event["total"] == 169 for event in running)
    last = status_of(server.url, job)
    assert last["state"] == "done" and last["started_at"] <= last["finished_at"]
    result = httpx.get(f"{server.url}{job['result_url']}", timeout=TIMEOUT)
    assert result.status_code == 200 and result.headers["content-type"] == "application/json"
    reference = post(roomy.url, image, samples=QUICK, resolution="full", seed=3, raw="true", mode="sync")
    assert reference.status_code == 200, reference.text
    assert comparable(result.content) == comparable(reference.content)
    again = httpx.get(f"{server.url}{job['result_url']}", timeout=TIMEOUT)
    assert again.content == result.content, "the result is kept, not recomputed"


def test_a_small_request_runs_as_a_job_when_asked_and_evaluate_too(server: LiveServer) -> None:
    image, mask = labelled_scene()
    files = {"file": ("scene.png", image), "mask": ("mask.png", mask_png(mask))}
    sync = httpx.post(f"{server.url}/api/v1/evaluate", files=files, data={"samples": "4"}, timeout=TIMEOUT)
    assert sync.status_code == 200, sync.text
    accepted = httpx.post(f"{server.url}/api/v1/evaluate", files=files, data={"samples": "4", "mode": "job"}, timeout=TIMEOUT)
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert job["kind"] == "evaluate" and finished(server.url, job)["state"] == "done"
    result = httpx.get(f"{server.url}{job['result_url']}", timeout=TIMEOUT)
    assert comparable(result.content) == comparable(sync.content) and "metrics" in result.json()


def test_a_job_whose_image_cannot_be_decoded_fails_with_the_requests_error(server: LiveServer) -> None:
    image = photo()
    job = submit(server.url, image[: len(image) // 2], samples=2, resolution="full")
    last = finished(server.url, job)
    assert last["state"] == "failed" and last["error"]["code"] == "corrupt_image" and last["error"]["field"] == "file"
    assert_error(httpx.get(f"{server.url}{job['result_url']}", timeout=TIMEOUT), 422, "corrupt_image", "file")


def test_cancel_stops_running_and_queued_jobs_and_the_store_is_bounded(server: LiveServer) -> None:
    running = submit(server.url, photo(seed=1), samples=SLOW, resolution="full")
    wait_until(lambda: status_of(server.url, running)["state"] == "running" and checks(server) > 0)
    queued = [submit(server.url, photo(seed=2), samples=SLOW, resolution="full"), submit(server.url, photo(seed=3), samples=SLOW, resolution="full")]
    assert [status_of(server.url, job)["state"] for job in queued] == ["queued", "queued"]
    refused = post(server.url, photo(seed=4), samples=SLOW, resolution="full")
    assert "SEGU_MAX_JOBS" in assert_error(refused, 503, "overloaded")["message"] and "retry-after" in refused.headers
    assert_error(httpx.get(f"{server.url}{running['result_url']}", timeout=TIMEOUT), 409, "job_no_result", "job_id")

    cancelled = httpx.delete(f"{server.url}{queued[0]['status_url']}", timeout=TIMEOUT)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    progress = status_of(server.url, running)["progress"]
    started = time.monotonic()
    stopped = httpx.delete(f"{server.url}{running['status_url']}", timeout=TIMEOUT).json()
    assert stopped["state"] == "cancelled" and time.monotonic() - started < 1.5
    assert 0 < stopped["progress"] < 1 and stopped["progress"] >= progress
    wait_until(lambda: status_of(server.url, queued[1])["state"] == "running")
    assert httpx.delete(f"{server.url}{queued[1]['status_url']}", timeout=TIMEOUT).json()["state"] == "cancelled"
    assert_idle(server)
    assert_error(httpx.get(f"{server.url}{running['result_url']}", timeout=TIMEOUT), 409, "job_no_result")
    again = httpx.delete(f"{server.url}{running['status_url']}", timeout=TIMEOUT)
    assert again.status_code == 200 and again.json()["state"] == "cancelled", "a finished job stays as it is"
    job = submit(server.url, photo(), samples=2, resolution="full")  # finished jobs make room for new ones
    assert finished(server.url, job)["state"] == "done"


@pytest.mark.parametrize("path", ["", "/result", "/events"])
def test_an_unknown_job_is_404(server: LiveServer, path: str) -> None:
    assert_error(httpx.get(f"{server.url}/api/v1/jobs/no-such-job{path}", timeout=TIMEOUT), 404, "job_not_found", "job_id")
    if not path:
        assert_error(httpx.delete(f"{server.url}/api/v1/jobs/no-such-job", timeout=TIMEOUT), 404, "job_not_found", "job_id")


def test_what_no_job_can_hold_is_413_and_mode_sync_never_makes_a_job(server: LiveServer) -> None:
    too_long = assert_error(post(server.url, photo(), samples=1024, resolution="full"), 413, "too_much_work")
    assert "SEGU_MAX_JOB_WORK" in too_long["message"] and "samples=554" in too_long["message"], too_long["message"]
    too_large = assert_error(post(server.url, photo(500), samples=0, resolution="full"), 413, "too_much_work")
    assert "SEGU_MAX_JOB_PIXELS" in too_large["message"] and "resolution=working" in too_large["message"]
    sync = assert_error(post(server.url, photo(), samples=QUICK, resolution="full", mode="sync"), 413, "too_much_work")
    assert "SEGU_MAX_WORK" in sync["message"] and "mode=auto" in sync["message"], sync["message"]
    small = post(server.url, photo(64), samples=2)
    assert small.status_code == 200 and "analysis_id" in small.json(), "within the budget, auto answers at once"
    assert len(server.app.state.services.jobs) <= 3
