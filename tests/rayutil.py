"""Helpers of the Ray tests: a local Ray that must leave no process behind."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RAY_CPUS = 2
# Every process a local Ray runs: its binaries and scripts live under site-packages/ray, its actors are named ray::…
_RAY_MARKERS = ("/site-packages/ray/", "ray::")


def ray_processes() -> set[tuple[int, str]]:
    """(pid, command line) of every live Ray process on this machine (zombies excluded)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(marker in cmdline for marker in _RAY_MARKERS):
            found.add((int(entry.name), cmdline[:200]))
    return found


def assert_ray_gone(before: set[tuple[int, str]], timeout: float = 20.0) -> None:
    """Wait until no Ray process started since ``before`` is alive; fail with their command lines otherwise."""
    deadline = time.monotonic() + timeout
    while (left := ray_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"Ray processes left running: {sorted(left)}"


@contextmanager
def local_ray() -> Iterator[None]:
    """A local Ray on :data:`RAY_CPUS` CPUs for the block (with Serve shut down after it), then checked to be gone."""
    import ray
    from ray import serve

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    before = ray_processes()
    sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()
        signal.signal(signal.SIGTERM, sigterm)  # ray.init installs its own and leaves it
    assert_ray_gone(before)
