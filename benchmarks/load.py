"""Overload on one machine: 1, 4, 16 and 64 concurrent clients against ``seg-uncertainty serve``, on loopback.

Starts ``python -m app serve`` with the default model on CPU (``SEGU_MAX_QUEUE=4`` and ``SEGU_TORCH_THREADS=1``
unless given in the environment: with the load generator on the same 2 cores, two OpenMP threads per analysis
stall for seconds when one of them waits for a busy core) and, for each number of clients, drives that many clients for a fixed window: each uploads a
600x400 JPEG of ``skimage.data.coffee`` with the page's default settings, again as soon as it has its answer;
after a 503 it waits the ``Retry-After`` seconds, as a well-behaved client does, and it lets idle connections
go after 2 s, before the server's keep-alive timeout (5 s) could close one under a request being sent. Meanwhile one more client asks
``GET /healthz`` every 0.1 s. Requests still in flight when the window ends are waited for and counted.

Then the abandoned-request check: 10 uploads whose sockets close 0.2 s after sending; the server's CPU time
(``/proc/<pid>/stat``) is sampled until it stops growing, and a normal request is timed right after.

Prints, per number of clients: requests, status codes, throughput of accepted requests, p50 and p99 latency of
accepted requests, p99 of their time inside the gate (the answer's timings but ``total``: decoding, analysis
and encoding, without the wait), p99 of ``/healthz``, the server's peak RSS; then the targets: under 64 clients only 200 and
503 (no 5xx, no client timeouts); p99 of accepted <= (queue limit + 1) x single-request time x 1.5 (single:
the 1-client p50); ``/healthz`` p99 <= 100 ms; abandoned requests stop costing CPU within 1 s.

Bounded: 4 windows of ``--window`` seconds (default 20), client timeouts of 150 s, loopback only.

Usage: python benchmarks/load.py [--window 20] [--clients 1,4,16,64] [--port 8766]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from common import proc_kib, wait_ready
from PIL import Image

CLIENT_TIMEOUT = 150.0
KEEPALIVE_EXPIRY = 2.0
HEALTH_EVERY = 0.1
ABANDONED = 10
CPU_SAMPLE = 0.1


def coffee_jpeg() -> bytes:
    """``skimage.data.coffee`` (600x400) as a quality-90 JPEG; a synthetic scene when scikit-image is missing."""
    try:
        from skimage import data

        rgb = data.coffee()
    except ImportError:
        from app.io.synthetic import make_scene

        rgb = np.asarray(Image.fromarray(make_scene("test", 0, size=256).image).resize((600, 400)))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Window:
    """What one window of load gave."""

    clients: int
    seconds: float
    statuses: Counter[str] = field(default_factory=Counter)
    accepted: list[float] = field(default_factory=list)
    in_gate: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    peak_rss_mib: float = 0.0

    def row(self) -> str:
        codes = " ".join(f"{code} x{count}" for code, count in sorted(self.statuses.items()))
        p50, p99 = np.percentile(self.accepted, [50, 99]) if self.accepted else (float("nan"), float("nan"))
        gate = np.percentile(self.in_gate, 99) if self.in_gate else float("nan")
        health = np.percentile(self.health, 99) * 1000 if self.health else float("nan")
        requests = sum(self.statuses.values())
        rate = len(self.accepted) / self.seconds
        return (
            f"| {self.clients} | {requests} | {codes} | {rate:.2f}/s | {p50:.2f} s | {p99:.2f} s | {gate:.2f} s | {health:.0f} ms "
            f"| {self.peak_rss_mib:.0f} MiB |"
        )


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
            window.accepted.append(time.monotonic() - started)
            timings = response.json()["timings"]
            window.in_gate.append(sum(float(v) for k, v in timings.items() if k != "total"))
        elif response.status_code == 503:
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))


async def health_loop(url: str, until: float, window: Window) -> None:
    """``GET /healthz`` every 0.1 s on its own connection, recording each latency."""
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        while time.monotonic() < until:
            started = time.monotonic()
            response = await client.get(f"{url}/healthz")
            window.health.append(time.monotonic() - started)
            response.raise_for_status()
            await asyncio.sleep(HEALTH_EVERY)


async def run_window(url: str, photo: bytes, clients: int, seconds: float, pid: int) -> Window:
    window = Window(clients, seconds)
    until = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=KEEPALIVE_EXPIRY)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT, limits=limits) as client:
        await asyncio.gather(health_loop(url, until, window), *(client_loop(client, url, photo, until, window) for _ in range(clients)))
    window.peak_rss_mib = proc_kib(pid, "VmHWM") / 1024
    return window


def raw_upload(port: int, photo: bytes) -> bytes:
    request = httpx.Request("POST", f"http://127.0.0.1:{port}/api/v1/analyze", files={"file": ("coffee.jpg", photo, "image/jpeg")})
    body = request.read()
    head = f"POST /api/v1/analyze HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {request.headers['content-type']}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def abandoned_check(url: str, port: int, photo: bytes, pid: int) -> tuple[float, float, float]:
    """Send uploads that hang up after 0.2 s; how long the server's CPU kept growing after, its CPU then, and a normal request's time."""
    sockets = []
    for _ in range(ABANDONED):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(raw_upload(port, photo))
        sockets.append(sock)
    time.sleep(0.2)
    for sock in sockets:
        sock.close()
    closed = time.monotonic()
    last_busy = closed
    previous = cpu_seconds(pid)
    while time.monotonic() - closed < 5.0:
        time.sleep(CPU_SAMPLE)
        now = cpu_seconds(pid)
        if now - previous > 0.3 * CPU_SAMPLE:
            last_busy = time.monotonic()
        previous = now
    idle_cpu = cpu_seconds(pid)
    time.sleep(1.0)
    idle_cpu = cpu_seconds(pid) - idle_cpu
    started = time.monotonic()
    httpx.post(f"{url}/api/v1/analyze", files={"file": ("coffee.jpg", photo, "image/jpeg")}, timeout=CLIENT_TIMEOUT).raise_for_status()
    return last_busy - closed, idle_cpu, time.monotonic() - started


def main() -> int:
    """Start the server, run the windows and the abandoned-request check, print the table and the targets."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--window", type=float, default=20.0, help="seconds of load per number of clients")
    p.add_argument("--clients", default="1,4,16,64")
    p.add_argument("--port", type=int, default=8766)
    args = p.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    photo = coffee_jpeg()
    url = f"http://127.0.0.1:{args.port}"
    env = {**os.environ, "SEGU_MAX_QUEUE": os.environ.get("SEGU_MAX_QUEUE", "4"), "SEGU_TORCH_THREADS": os.environ.get("SEGU_TORCH_THREADS", "1")}
    queue = int(env["SEGU_MAX_QUEUE"])
    command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(args.port), "--device", "cpu"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(url, server)
        rss_ready = proc_kib(server.pid, "VmRSS") / 1024
        windows = [asyncio.run(run_window(url, photo, clients, args.window, server.pid)) for clients in counts]
        stopped_after, idle_cpu, after = abandoned_check(url, args.port, photo, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"600x400 JPEG of skimage.data.coffee ({len(photo) / 1e3:.0f} kB), default model on CPU, default settings, "
        f"SEGU_MAX_QUEUE={queue}, SEGU_TORCH_THREADS={env['SEGU_TORCH_THREADS']}"
    )
    print(f"{args.window:g} s windows; server RSS once ready {rss_ready:.0f} MiB")
    print("| concurrent clients | requests | status codes | throughput (200s) | p50 | p99 | p99 in the gate | /healthz p99 | server peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for window in windows:
        print(window.row())
    single = float(np.percentile(windows[0].accepted, 50)) if windows[0].accepted else float("nan")
    bound = (queue + 1) * single * 1.5
    busiest = windows[-1]
    others = {code for code in busiest.statuses if code not in ("200", "503")}
    worst_p99 = max((float(np.percentile(w.accepted, 99)) for w in windows if w.accepted), default=float("nan"))
    worst_health = max(float(np.percentile(w.health, 99)) for w in windows) * 1000
    print(f"under {busiest.clients} clients only 200 and 503: {'OK' if not others else 'MISSED: ' + ', '.join(sorted(others))}")
    print(f"p99 of accepted <= (queue + 1) x single x 1.5 = {bound:.2f} s: worst {worst_p99:.2f} s {'OK' if worst_p99 <= bound else 'MISSED'}")
    print(f"/healthz p99 <= 100 ms: worst {worst_health:.0f} ms {'OK' if worst_health <= 100 else 'MISSED'}")
    print(
        f"{ABANDONED} abandoned uploads: server CPU stopped growing {stopped_after:.2f} s after they hung up "
        f"{'OK' if stopped_after <= 1.0 else 'MISSED'} (then {idle_cpu:.2f} s CPU in 1 s); a normal request right after took {after:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
