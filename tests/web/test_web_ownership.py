"""Analyses and jobs belong to the API key that made them: another key gets the 404 of an unknown id (issue 20, item 7).

End to end against a real uvicorn server with two keys; the owner semantics of the cache, the job store and the key
middleware in-process.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import numpy as np
import pytest
from webutil import LiveServer, assert_error, encode_image, open_page, random_png, web_settings

from app.web.cache import AnalysisCache, CachedAnalysis
from app.web.errors import ApiError
from app.web.jobs import JobStore
from app.web.security.api_keys import OWNER_STATE, ApiKeyMiddleware, current_owner, owned_by, same_owner

KEY_A = "owner-a-key-0123456789abcdef"
KEY_B = "owner-b-key-0123456789abcdef"
TIMEOUT = 60.0
SLOW_SAMPLES = 512  # the 300x300 full-resolution job of test_web_jobs.py: several seconds in 1 MiB tiles


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def server(tiny_bundle_dir: Path) -> Iterator[LiveServer]:
    """Two keys, jobs on (one slot), a 1 MiB memory budget so a full-resolution job runs long enough to be cancelled."""
    settings = web_settings(
        tiny_bundle_dir,
        api_keys=[KEY_A, KEY_B],
        warmup=False,
        max_pixels=300_000,
        max_body_bytes=2**20,
        max_samples=4096,
        max_work=100_000,
        max_job_work=50_000_000,
        max_job_pixels=200_000,
        memory_budget=2**20,
        max_concurrent=1,
        max_jobs=4,
    )
    live = LiveServer(settings).start()
    yield live
    live.stop()


def analyze(url: str, key: str, **form: object) -> httpx.Response:
    files = {"file": ("scene.png", random_png(24, 32, seed=5))}
    return httpx.post(f"{url}/api/v1/analyze", files=files, data={k: str(v) for k, v in form.items()}, headers=bearer(key), timeout=TIMEOUT)


def get(url: str, path: str, key: str) -> httpx.Response:
    return httpx.get(f"{url}{path}", headers=bearer(key), timeout=TIMEOUT)


def unknown_like(known: str) -> str:
    """An id of the same shape that was never issued."""
    return known[: -len(known) // 2] + secrets.token_urlsafe(len(known))[: len(known) // 2]


def assert_same_404(theirs: httpx.Response, unknown: httpx.Response, their_id: str, unknown_id: str, code: str) -> None:
    """Another owner's id and a never-issued id answer the same status, code, field and message (up to the id itself)."""
    first = assert_error(theirs, 404, code)
    second = assert_error(unknown, 404, code)
    assert first["message"].replace(their_id, "ID") == second["message"].replace(unknown_id, "ID")
    assert first.get("field") == second.get("field")
    assert {k for k in theirs.headers if k != "x-request-id"} == {k for k in unknown.headers if k != "x-request-id"}


ANALYSIS_PATHS = ("/maps.npz", "/maps/prediction.png", "/maps/entropy.png", "/pixel?x=1&y=2")


def test_key_b_gets_404_for_key_as_analysis(server: LiveServer) -> None:
    answer = analyze(server.url, KEY_A, samples=2)
    assert answer.status_code == 200, answer.text
    analysis_id = answer.json()["analysis_id"]
    never = unknown_like(analysis_id)
    for tail in ANALYSIS_PATHS:
        theirs = get(server.url, f"/api/v1/analyses/{analysis_id}{tail}", KEY_B)
        unknown = get(server.url, f"/api/v1/analyses/{never}{tail}", KEY_B)
        assert_same_404(theirs, unknown, analysis_id, never, "analysis_not_found")
        mine = get(server.url, f"/api/v1/analyses/{analysis_id}{tail}", KEY_A)
        assert mine.status_code == 200, (tail, mine.text)


def test_each_key_reads_its_own_analyses(server: LiveServer) -> None:
    ids = {key: analyze(server.url, key, samples=1).json()["analysis_id"] for key in (KEY_A, KEY_B)}
    for key, analysis_id in ids.items():
        other = KEY_B if key == KEY_A else KEY_A
        assert get(server.url, f"/api/v1/analyses/{analysis_id}/maps.npz", key).status_code == 200
        assert_error(get(server.url, f"/api/v1/analyses/{analysis_id}/maps.npz", other), 404, "analysis_not_found")


def test_without_a_key_nothing_is_found_it_is_refused(server: LiveServer) -> None:
    analysis_id = analyze(server.url, KEY_A, samples=1).json()["analysis_id"]
    assert_error(httpx.get(f"{server.url}/api/v1/analyses/{analysis_id}/maps.npz", timeout=TIMEOUT), 401, "unauthorized")


def photo(side: int = 300) -> bytes:
    return encode_image(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8), "JPEG")


def submit(url: str, key: str, image: bytes, **form: object) -> dict[str, Any]:
    data = {k: str(v) for k, v in {"mode": "job", **form}.items()}
    response = httpx.post(f"{url}/api/v1/analyze", files={"file": ("a.jpg", image)}, data=data, headers=bearer(key), timeout=TIMEOUT)
    assert response.status_code == 202, response.text
    return dict(response.json())


def wait_finished(url: str, key: str, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = get(url, f"/api/v1/jobs/{job_id}", key).json()
        if status["state"] in ("done", "failed", "cancelled"):
            return dict(status)
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_key_b_can_neither_see_nor_cancel_key_as_job(server: LiveServer) -> None:
    job = submit(server.url, KEY_A, photo(), samples=SLOW_SAMPLES, resolution="full")
    job_id = job["job_id"]
    never = unknown_like(job_id)
    try:
        for method, tail in (("GET", ""), ("GET", "/result"), ("GET", "/events"), ("DELETE", "")):
            theirs = httpx.request(method, f"{server.url}/api/v1/jobs/{job_id}{tail}", headers=bearer(KEY_B), timeout=TIMEOUT)
            unknown = httpx.request(method, f"{server.url}/api/v1/jobs/{never}{tail}", headers=bearer(KEY_B), timeout=TIMEOUT)
            assert_same_404(theirs, unknown, job_id, never, "job_not_found")
        assert get(server.url, f"/api/v1/jobs/{job_id}", KEY_A).json()["state"] in ("queued", "running"), "B's DELETE cancelled nothing"
    finally:
        cancelled = httpx.delete(f"{server.url}/api/v1/jobs/{job_id}", headers=bearer(KEY_A), timeout=TIMEOUT)
    assert cancelled.status_code == 200 and wait_finished(server.url, KEY_A, job_id)["state"] == "cancelled"


def test_a_jobs_result_and_the_analysis_it_keeps_are_its_keys(server: LiveServer) -> None:
    job = submit(server.url, KEY_A, random_png(24, 32, seed=9), samples=2)
    assert wait_finished(server.url, KEY_A, job["job_id"])["state"] == "done"
    result = get(server.url, job["result_url"], KEY_A)
    assert result.status_code == 200, result.text
    analysis_id = result.json()["analysis_id"]
    assert get(server.url, f"/api/v1/analyses/{analysis_id}/maps.npz", KEY_A).status_code == 200
    assert_error(get(server.url, f"/api/v1/analyses/{analysis_id}/maps.npz", KEY_B), 404, "analysis_not_found")
    assert_error(get(server.url, job["result_url"], KEY_B), 404, "job_not_found")


# ---- In-process: the middleware's owner, the cache and the job store ----


def test_the_owner_is_the_keys_position_never_the_key() -> None:
    keys = [KEY_A, KEY_B, KEY_A]
    middleware = ApiKeyMiddleware(lambda scope, receive, send: anyio.sleep(0), keys)
    assert [middleware.owner_of(k) for k in (KEY_A, KEY_B, KEY_A + "x", "", KEY_B[:-1])] == ["key-1", "key-2", None, None, None]
    assert middleware.valid(KEY_B) and not middleware.valid("not-" + KEY_B)


def test_the_request_and_its_worker_threads_run_as_the_keys_owner() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["state"] = scope["state"][OWNER_STATE]
        seen["task"] = current_owner()
        seen["thread"] = await anyio.to_thread.run_sync(current_owner)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def call() -> None:
        scope = {"type": "http", "method": "GET", "path": "/api/v1/models", "headers": [(b"authorization", f"Bearer {KEY_B}".encode())]}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            pass

        await ApiKeyMiddleware(app, [KEY_A, KEY_B])(scope, receive, send)

    anyio.run(call)
    assert seen == {"state": "key-2", "task": "key-2", "thread": "key-2"}
    assert current_owner() is None, "the owner does not outlive the request"


def entry(owner: str | None) -> CachedAnalysis:
    return CachedAnalysis(arrays={"prediction": np.zeros((2, 3), np.uint8)}, class_names=["a"], class_colours=["#000000"], owner=owner)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_answers_another_owner_as_an_unknown_id_and_keeps_its_expiry() -> None:
    clock = Clock()
    cache = AnalysisCache(max_entries=2, max_bytes=10**6, ttl=10.0, clock=clock)
    mine, other = cache.put(entry("key-1")), cache.put(entry("key-1"))
    assert mine is not None and other is not None
    assert cache.get(mine, "key-2") is None and cache.get(mine) is None
    clock.now = 5.0
    assert cache.get(mine, "key-1") is not None and cache.get(other, "key-2") is None
    clock.now = 11.0
    assert cache.get(other, "key-1") is None, "another owner's look-up did not push its expiry back"
    assert cache.get(mine, "key-1") is not None
    newer = cache.put(entry("key-1"))  # now mine, then newer: mine is the least recently used
    assert cache.get(mine, "key-2") is None  # would make mine the most recently used if it counted
    cache.put(entry("key-1"))
    assert cache.get(mine, "key-1") is None and newer is not None and cache.get(newer, "key-1") is not None
    open_cache = AnalysisCache(max_entries=2, max_bytes=10**6, ttl=10.0)
    kept = open_cache.put(entry(None))
    assert kept is not None and open_cache.get(kept) is not None and open_cache.get(kept, "key-1") is None


def test_another_owner_and_an_unknown_id_take_the_same_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both are one dictionary look-up and one owner comparison through :func:`hmac.compare_digest` (constant time in the
    tags' contents), so neither answer nor work tells a foreign id from one that never existed. Checked by recording the
    comparisons, not by timing them (a timing bound on a shared machine is noise)."""
    import hmac

    import app.web.cache as cache_module
    import app.web.security.api_keys as keys_module

    cache = AnalysisCache(max_entries=10, max_bytes=10**9, ttl=1e9)
    theirs = cache.put(entry("key-1"))
    assert theirs is not None
    compared: list[tuple[object, object]] = []
    digests: list[tuple[bytes, bytes]] = []

    def recording_same_owner(held_by: str | None, asking: str | None) -> bool:
        compared.append((held_by, asking))
        return same_owner(held_by, asking)

    compare = hmac.compare_digest

    def recording_digest(a: bytes, b: bytes) -> bool:
        digests.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(cache_module, "same_owner", recording_same_owner)
    monkeypatch.setattr(keys_module.hmac, "compare_digest", recording_digest)
    assert cache.get(theirs, "key-2") is None
    assert cache.get(unknown_like(theirs), "key-2") is None
    assert len(compared) == 2 and [asking for _, asking in compared] == ["key-2", "key-2"]
    assert compared[0][0] == "key-1" and compared[1][0] != "key-1"
    assert len(digests) == 2, "each answer is one constant-time comparison"


def test_the_job_store_answers_another_owner_as_an_unknown_id() -> None:
    async def run() -> None:
        store = JobStore(max_jobs=2, ttl=60.0)
        async with anyio.create_task_group() as tg:
            await tg.start(store.serve)
            seen: list[str | None] = []

            async def work(job: Any) -> None:
                seen.append(current_owner())
                job.mark("done")

            with owned_by("key-1"):
                job = store.submit("analyze", "m", 1, "one", work)
            await job.wait_change(5.0)
            assert seen == ["key-1"] and job.owner == "key-1"
            assert store.get(job.id, "key-1") is job
            for owner in ("key-2", None):
                with pytest.raises(ApiError) as theirs:
                    store.cancel(job.id, owner)
                with pytest.raises(ApiError) as never:
                    store.get("never-issued", owner)
                assert theirs.value.code == never.value.code == "job_not_found" and theirs.value.status == 404
                assert theirs.value.message.replace(job.id, "ID") == never.value.message.replace("never-issued", "ID")
            tg.cancel_scope.cancel()

    anyio.run(run)


def test_same_owner() -> None:
    assert same_owner(None, None) and same_owner("key-1", "key-1")
    assert not same_owner("key-1", None) and not same_owner(None, "key-1") and not same_owner("key-1", "key-2")


# ---- The page with two keys, in Chromium ----


@pytest.mark.browser
def test_the_page_analyses_and_downloads_with_its_key_and_the_other_key_finds_nothing(browser: Any, server: LiveServer) -> None:
    for page in open_page(browser, server.url):
        page.fill("#api-key", KEY_B)
        with page.expect_response(f"{server.url}/api/v1/analyze") as answer:
            page.set_input_files("#file-input", [{"name": "a.png", "mimeType": "image/png", "buffer": random_png(24, 32)}])
        analysis_id = answer.value.json()["analysis_id"]
        page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)
        with page.expect_download() as download:
            page.click("#download-npz")
        assert download.value.failure() is None
        assert get(server.url, f"/api/v1/analyses/{analysis_id}/maps.npz", KEY_B).status_code == 200
        assert_error(get(server.url, f"/api/v1/analyses/{analysis_id}/maps.npz", KEY_A), 404, "analysis_not_found")
