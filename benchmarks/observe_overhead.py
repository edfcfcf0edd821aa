"""What request ids, metrics and the JSON access log cost per request, side by side with the same app without them.

Each variant answers ``GET /healthz`` (the cheapest route, so the overhead is as large a share as it gets) in-process
through httpx's ASGI transport; rounds alternate between variants and the median round is reported. Also times one
``GET /metrics`` scrape.

    .venv/bin/python benchmarks/observe_overhead.py [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time

import httpx
from fastapi import FastAPI

from app.web.access_log import LOGGER
from app.web.factory import create_app
from app.web.observe import ObserveMiddleware
from app.web.settings import Settings


def build(observed: bool) -> FastAPI:
    app = create_app(Settings(warmup=False))
    if not observed:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not ObserveMiddleware]
    return app


async def per_request_us(app: FastAPI, requests: int, path: str = "/healthz") -> float:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        await client.get(path)
        start = time.perf_counter()
        for _ in range(requests):
            await client.get(path)
        return (time.perf_counter() - start) / requests * 1e6


def set_access_log(on: bool, handler: logging.Handler) -> None:
    logger = logging.getLogger(LOGGER)
    logger.propagate = False
    logger.setLevel(logging.INFO if on else logging.WARNING)
    if handler not in logger.handlers:
        logger.addHandler(handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the script)
    variants = {"bare (no ids, metrics, log)": (build(False), False), "ids + metrics": (build(True), False), "ids + metrics + JSON log": (build(True), True)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (app, log_on) in variants.items():
            set_access_log(log_on, handler)
            times[name].append(asyncio.run(per_request_us(app, args.requests)))
    bare = statistics.median(times["bare (no ids, metrics, log)"])
    print(f"GET /healthz in-process, {args.requests} requests x {args.rounds} rounds (median round):")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:28s} {median:8.1f} us/request   x{median / bare:.2f}   (+{median - bare:.1f} us)")
    app = variants["ids + metrics"][0]
    scrape = asyncio.run(per_request_us(app, 200, "/metrics"))
    print(f"  GET /metrics scrape           {scrape:8.1f} us")


if __name__ == "__main__":
    main()
