"""Throughput of the web app on Ray Serve with 1 and 2 replicas, on this machine, under concurrent clients.

Starts a local Ray (``--cpus`` CPUs, default 2) and deploys the app (:mod:`app.web.ray_serve`, the shipped default
model on CPU) three times: 1 replica of 1 CPU, 1 replica of all the CPUs (PyTorch then uses that many threads),
and ``--cpus`` replicas of 1 CPU each. For each, ``--clients`` clients (default 4) upload a 600x400 JPEG of
``skimage.data.coffee`` with the page's default settings, again as soon as they have their answer, for
``--window`` seconds (default 20) after a short warm-up; no request is refused (no proxy queue limit). Prints
requests/s per deployment, how the requests were spread over the replicas (``X-Replica-ID``), and the ratios.

The clients run in this process, on the same cores as the replicas. Ray is shut down at the end.

Usage: python benchmarks/ray_replicas.py [--window 20] [--clients 4] [--cpus 2] [--port 8767]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass

import httpx
from load import coffee_jpeg

CLIENT_TIMEOUT = 120.0
WARMUP_SECONDS = 3.0


@dataclass
class Result:
    """What one deployment served in the window."""

    label: str
    requests: int
    seconds: float
    replicas: Counter[str]
    failures: Counter[int]

    @property
    def rate(self) -> float:
        """Answered requests per second."""
        return self.requests / self.seconds


async def drive(url: str, image: bytes, clients: int, seconds: float) -> tuple[int, float, Counter[str], Counter[int]]:
    """``clients`` closed-loop clients for ``seconds``; requests finished inside the window, its length, replicas, failures."""
    replicas: Counter[str] = Counter()
    failures: Counter[int] = Counter()
    done = 0
    end = time.monotonic() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < end:
            response = await http.post(f"{url}/api/v1/analyze", files={"file": ("coffee.jpg", image, "image/jpeg")})
            if response.status_code != 200:
                failures[response.status_code] += 1
            elif time.monotonic() <= end:
                done += 1
                replicas[response.headers.get("x-replica-id", "?")] += 1

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return done, min(time.monotonic(), end) - started, replicas, failures


def measure(label: str, replicas: int, cpus: float, args: argparse.Namespace, image: bytes) -> Result:
    """Deploy, warm up, drive the clients for the window, then delete the deployment."""
    from ray import serve

    from app.web.ray_serve import APP_NAME, ReplicaOptions, build_application

    options = ReplicaOptions(replicas=replicas, cpus=cpus, max_ongoing_requests=2, max_queued_requests=-1)
    serve.run(build_application({"device": "cpu"}, options), name=APP_NAME, route_prefix="/")
    url = f"http://127.0.0.1:{args.port}"
    asyncio.run(drive(url, image, args.clients, WARMUP_SECONDS))
    done, seconds, spread, failures = asyncio.run(drive(url, image, args.clients, args.window))
    serve.delete(APP_NAME)
    result = Result(label, done, seconds, spread, failures)
    print(f"{label:<24} {result.rate:6.2f} req/s  ({done} in {seconds:.1f} s; per replica {sorted(spread.values())}; failures {dict(failures)})", flush=True)
    return result


def main() -> None:
    """Run the three deployments and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    from ray import serve

    image = coffee_jpeg()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        print(f"{args.clients} clients, {args.window:g} s windows, {args.cpus} CPUs for Ray, default model on CPU, 600x400 JPEG", flush=True)
        one = measure("1 replica x 1 CPU", 1, 1, args, image)
        wide = measure(f"1 replica x {args.cpus} CPUs", 1, args.cpus, args, image)
        many = measure(f"{args.cpus} replicas x 1 CPU", args.cpus, 1, args, image)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
    print(f"ratio {args.cpus} replicas / 1 replica x 1 CPU:  {many.rate / one.rate:.2f}")
    print(f"ratio {args.cpus} replicas / 1 replica x {args.cpus} CPUs: {many.rate / wide.rate:.2f}")


if __name__ == "__main__":
    main()
