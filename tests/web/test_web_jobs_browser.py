"""The page in headless Chromium with an analysis over the server's budget: it runs as a job, the page shows a progress bar
and a cancel button, then the result as usual; cancel stops the job on the server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from webutil import LiveServer, encode_image, open_page, web_settings

pytestmark = pytest.mark.browser

SIDE = 300  # 300x300 x (samples + 1) is over the 100 000-unit budget at any samples: every upload runs as a job
PANELS_DRAWN = "() => document.querySelectorAll('.view canvas[data-drawn=\"1\"]').length >= 6 && document.body.dataset.state === 'ready'"
JOB_BAR = "() => { const bar = document.querySelector('#job'); return !bar.hidden && document.querySelector('#job-progress').value > 0; }"


@pytest.fixture(scope="module")
def job_server(tiny_bundle_dir: Path) -> Iterator[LiveServer]:
    settings = web_settings(
        tiny_bundle_dir, max_pixels=300_000, max_body_bytes=2**20, max_samples=1024, max_work=100_000, memory_budget=2**20, max_concurrent=1
    )
    server = LiveServer(settings).start()
    yield server
    server.stop()


@pytest.fixture
def job_page(browser: Any, job_server: LiveServer) -> Iterator[Any]:
    yield from open_page(browser, job_server.url)


def photo(seed: int = 0) -> bytes:
    return encode_image(np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8), "JPEG")


def start(page: Any, samples: int, seed: int = 0) -> None:
    page.fill("#samples", str(samples))
    page.set_input_files("#file-input", [{"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": photo(seed)}])


def test_a_long_analysis_shows_a_progress_bar_then_the_result(job_page: Any) -> None:
    job_page.evaluate("""() => { window.__progress = []; new MutationObserver(() => window.__progress.push(document.querySelector('#job-progress').value))
      .observe(document.querySelector('#job-text'), {childList: true, characterData: true, subtree: true}); }""")
    start(job_page, 64)
    job_page.wait_for_function(JOB_BAR, timeout=30_000)
    assert job_page.is_visible("#job-cancel") and "tiles" in (job_page.text_content("#job-text") or "")
    job_page.wait_for_function(PANELS_DRAWN, timeout=60_000)
    assert job_page.is_hidden("#job")
    values = job_page.evaluate("window.__progress")
    shown = [v for v in values if 0 < v < 1]
    assert len(set(shown)) >= 2 and shown == sorted(shown), values
    assert job_page.text_content("#input-size")
    assert job_page.is_hidden("#error")


def test_cancel_stops_the_job_and_says_so(job_page: Any, job_server: LiveServer) -> None:
    with job_page.expect_response(lambda r: r.url.endswith("/api/v1/analyze")) as answer:
        start(job_page, 1024, seed=1)
    assert answer.value.status == 202
    job = job_server.app.state.services.jobs.get(answer.value.json()["job_id"])
    job_page.wait_for_function(JOB_BAR, timeout=30_000)
    job_page.click("#job-cancel")
    job_page.wait_for_function("() => document.querySelector('#job').hidden", timeout=10_000)
    job_page.wait_for_function("() => !document.querySelector('#error').hidden", timeout=10_000)
    assert "cancelled" in (job_page.text_content("#error") or "")
    started = time.monotonic()
    while job.state != "cancelled":
        assert time.monotonic() - started < 5, job.state
        time.sleep(0.05)
    assert 0 < job.progress.fraction < 1
    admission = job_server.app.state.service.admission
    assert admission.admitted == 0 and admission.running == 0
