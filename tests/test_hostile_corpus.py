"""Every case of the hostile corpus (tests/hostile_corpus.py) sent to the real app, each in a subprocess of its own.

The child builds the app as ``make run`` does, serving the shipped default model with the default settings, waits for
it to be ready, then posts the case once (``mode=sync``) through Starlette's TestClient: what is checked is what an
attacker gets (status and error code, from the whole stack: pre-check, probe, work budget, decode, deadline), and the
request's wall time and the peak resident memory it adds (the high-water mark reset just before the request), against
the case's generous limits. A subprocess per case keeps one case's peak out of another's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hostile_corpus import CASES, Case, peak_kib, reset_peak

CHILD_TIMEOUT = 600


def _serve_one(path: str) -> dict[str, Any]:
    """In the child: the default app's answer to ``path`` and what the request cost."""
    from fastapi.testclient import TestClient

    from app.web.factory import create_app
    from app.web.settings import Settings

    settings = Settings(model="default", device="cpu", allowed_hosts=["testserver"])
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 300
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the app never became ready"
            time.sleep(0.05)
        data = Path(path).read_bytes()
        base = reset_peak()
        started = time.monotonic()
        response = client.post("/api/v1/analyze", files={"file": ("upload", data, "application/octet-stream")}, data={"mode": "sync"})
        seconds = time.monotonic() - started
        mib = (peak_kib() - base) / 1024
    error = response.json().get("error", {}) if response.headers.get("content-type", "").startswith("application/json") else {}
    return {"status": response.status_code, "code": error.get("code"), "message": error.get("message", ""), "seconds": seconds, "mib": mib}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_default_app_answers_each_hostile_upload_within_its_limits(case: Case, tmp_path: Path) -> None:
    path = tmp_path / case.name
    path.write_bytes(case.make())
    run = subprocess.run([sys.executable, __file__, str(path)], capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert run.returncode == 0, run.stderr[-4000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"{case.name}: {outcome}")
    assert (outcome["status"], outcome["code"]) == (case.status, case.code), outcome
    assert outcome["seconds"] <= case.seconds, outcome
    assert outcome["mib"] <= case.mib, outcome
    if case.code == "too_much_work":
        assert "decoding" in outcome["message"], outcome


if __name__ == "__main__":
    print(json.dumps(_serve_one(sys.argv[1])), flush=True)
    # The answer is out; skip the interpreter's teardown, where a native thread once aborted the child (SIGABRT,
    # "terminate called without an active exception") after a correct answer, under a full suite's load.
    os._exit(0)
