"""``seg-uncertainty serve --ray`` end to end: a local Ray with one replica, served until SIGTERM, then gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rayutil import assert_ray_gone, ray_processes
from webutil import free_port, random_png

pytestmark = pytest.mark.slow

START_SECONDS = 120


def test_serve_on_ray_answers_then_stops_ray_on_sigterm(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """The command starts Ray, deploys the app (its answers name their replica, analysis ids too), says where it
    serves, and on SIGTERM removes the app, stops Ray and exits 0, leaving no Ray process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "app", "serve", "--ray", "--replicas", "1", "--model", str(tiny_bundle_dir), "--device", "cpu", "--port", str(port)]
    log = tmp_path / "stderr.txt"
    before = ray_processes()
    with log.open("wb") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        try:
            deadline = time.monotonic() + START_SECONDS
            while f"serving {url} on Ray: 1 replica" not in log.read_text(errors="replace"):
                assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "not serving in time"
                time.sleep(0.5)
            ready = httpx.get(f"{url}/readyz", timeout=10)
            while ready.status_code == 503 and time.monotonic() < deadline:  # the replica's warm-up analysis may still run
                time.sleep(0.5)
                ready = httpx.get(f"{url}/readyz", timeout=10)
            assert ready.status_code == 200 and ready.json()["model"] == "tiny"
            replica = ready.headers["x-replica-id"]
            answer = httpx.post(f"{url}/api/v1/analyze", files={"file": ("a.png", random_png(), "image/png")}, data={"samples": "2"}, timeout=60)
            assert answer.status_code == 200 and answer.headers["x-replica-id"] == replica
            assert answer.json()["analysis_id"].startswith(f"{replica}.")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert_ray_gone(before)
