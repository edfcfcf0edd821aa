"""Helpers the benchmark scripts share: a phone-sized photo, a server's memory and readiness, the network's own time."""

from __future__ import annotations

import io
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from app.io.synthetic import make_scene


def phone_photo(width: int = 4000, height: int = 3000) -> bytes:
    """A ``width x height`` JPEG (quality 90) made from a real photo (``skimage.data.chelsea``; a synthetic scene without scikit-image)."""
    try:
        from skimage import data

        rgb = data.chelsea()
    except ImportError:
        rgb = make_scene("test", 0, size=256).image
    big = Image.fromarray(np.ascontiguousarray(rgb)).resize((width, height), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def proc_kib(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` memory field (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def wait_ready(url: str, server: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    """Poll ``/readyz`` until the server answers 200.

    Raises:
        RuntimeError: the server exited or was not ready in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server at {url} not ready after {timeout} s")


def network_seconds(net: Any, tile: tuple[int, int], pixels: int, rounds: int = 5) -> float:
    """The network alone on ``pixels`` pixels: the median of ``rounds`` forwards of a zero ``tile``-sized input (after a
    warm-up), per pixel, times ``pixels``."""
    import torch

    probe = torch.zeros(1, 3, *tile)
    with torch.inference_mode():
        net(probe)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            net(probe)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / (tile[0] * tile[1]) * pixels
