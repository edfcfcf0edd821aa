"""Back-pressure that tells the truth: 8, then 32 clients that obey ``Retry-After`` against one ``seg-uncertainty serve``.

Starts ``python -m app serve`` with the default model on CPU (``SEGU_TORCH_THREADS=1`` unless set: the clients share the
machine's cores; every other limit at its default, so one analysis runs at a time and ``SEGU_MAX_QUEUE`` wait) and,
for each number of clients, drives that many for a fixed window: each uploads the 600x400 JPEG of
``skimage.data.coffee`` with the page's default settings, again as soon as it has its answer, and after a 503 waits
the ``Retry-After`` seconds before it tries again. Retry-After comes from the measured service time and the position in
line (:mod:`app.web.admission`): if it tells the truth, clients that obey it keep the server as busy with 32 clients as
with 8, so the answers per second stay the same.

Prints one table, a row per number of clients: requests, status codes, answers (200) per second, mean and largest
Retry-After of the 503s, p50 latency of the answers; then the ratio of the two throughputs.

Bounded: two windows of ``--window`` seconds (default 20), client timeouts of 150 s, loopback only.

Usage: python benchmarks/backpressure.py [--window 20] [--clients 8,32] [--port 8767]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np
from common import wait_ready
from load import coffee_jpeg

CLIENT_TIMEOUT = 150.0


@dataclass
class Window:
    """What one window of clients got."""

    clients: int
    seconds: float
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    retry_after: list[float] = field(default_factory=list)

    def row(self) -> str:
        codes = " ".join(f"{code} x{count}" for code, count in sorted(self.statuses.items()))
        rate = len(self.latencies) / self.seconds
        retry = f"{np.mean(self.retry_after):.2f} s | {max(self.retry_after):.0f} s" if self.retry_after else "no 503 | no 503"
        p50 = float(np.percentile(self.latencies, 50)) if self.latencies else float("nan")
        return f"| {self.clients} | {sum(self.statuses.values())} | {codes} | {rate:.2f}/s | {retry} | {p50:.2f} s |"


async def client_loop(client: httpx.AsyncClient, url: str, photo: bytes, until: float, window: Window) -> None:
    """Upload again and again until ``until``; after a 503, wait its Retry-After."""
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            response = await client.post(f"{url}/api/v1/analyze", files={"file": ("coffee.jpg", photo, "image/jpeg")})
        except httpx.TimeoutException:
            window.statuses["client timeout"] += 1
            continue
        except httpx.TransportError as exc:
            window.statuses[f"transport error ({type(exc).__name__})"] += 1
            await asyncio.sleep(0.1)
            continue
        window.statuses[str(response.status_code)] += 1
        if response.status_code == 200:
            window.latencies.append(time.monotonic() - started)
        elif response.status_code == 503:
            wait = float(response.headers.get("retry-after", "1"))
            window.retry_after.append(wait)
            await asyncio.sleep(wait)


async def run_window(url: str, photo: bytes, clients: int, seconds: float) -> Window:
    window = Window(clients, seconds)
    until = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT, limits=limits) as client:
        await asyncio.gather(*(client_loop(client, url, photo, until, window) for _ in range(clients)))
    return window


def main() -> int:
    """Start the server, run one window per number of clients, print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--window", type=float, default=20.0, help="seconds of load per number of clients")
    p.add_argument("--clients", default="8,32")
    p.add_argument("--port", type=int, default=8767)
    args = p.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    photo = coffee_jpeg()
    url = f"http://127.0.0.1:{args.port}"
    env = {**os.environ, "SEGU_TORCH_THREADS": os.environ.get("SEGU_TORCH_THREADS", "1")}
    command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(args.port), "--device", "cpu"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(url, server)
        httpx.post(f"{url}/api/v1/analyze", files={"file": ("coffee.jpg", photo, "image/jpeg")}, timeout=CLIENT_TIMEOUT).raise_for_status()
        windows = [asyncio.run(run_window(url, photo, clients, args.window)) for clients in counts]
    finally:
        server.terminate()
        server.wait(timeout=30)
    settings = ", ".join(f"{name}={value}" for name, value in sorted(env.items()) if name.startswith("SEGU_"))
    print(f"600x400 JPEG of skimage.data.coffee ({len(photo) / 1e3:.0f} kB), default model on CPU, {settings}; {args.window:g} s windows")
    print("| clients | requests | status codes | answers (200) | mean Retry-After | largest Retry-After | p50 latency |")
    print("|---|---|---|---|---|---|---|")
    for window in windows:
        print(window.row())
    rates = [len(w.latencies) / w.seconds for w in windows]
    if len(rates) > 1 and rates[0] > 0:
        print(f"answers/s with {windows[-1].clients} clients / with {windows[0].clients}: {rates[-1] / rates[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
