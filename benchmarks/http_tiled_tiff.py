"""Tiled BigTIFFs far beyond a photo through the real server: the job's time and the server's peak memory, per size.

Writes the tiled BigTIFFs of ``large_tiled_tiff.py`` (256 px tiles, zlib, the astronaut mirrored; never whole in
memory) of each ``--megapixels`` size, starts ``seg-uncertainty serve`` (default model, CPU, uploads up to 1 GiB, stores
in a temporary folder kept up to 64 GiB, ``SEGU_MAX_PIXELS=--max-pixels``: 1 M by default, so that every size, the 12 MP
reference included, is read tile by tile rather than decoded whole by Pillow, which reads BigTIFFs up to 40 MP) once per
size in a fresh process, and posts the file with ``resolution=full``, ``samples=T``, ``mode=job``; it polls the job to
its end and reads the answer. Printed per size: the server's resident memory once ready (Python, PyTorch, the models),
its peak (``VmHWM``) after the job and the growth between them, the growth over the first size's (the issue: none
beyond a photo), the job's seconds, the answer's bytes and the store's bytes on disk.

Target (the issue's): a 100 MP tiled TIFF analysed with peak memory <= 1 GiB beyond what the server holds before it,
and no growth with the image's size.

Usage: python benchmarks/http_tiled_tiff.py [--megapixels 12 100] [--samples 0] [--port 8767] [--max-pixels 1000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import proc_kib, wait_ready
from large_tiled_tiff import write_slide

TIMEOUT = 3600.0


def run_job(url: str, slide: Path, samples: int) -> tuple[float, int]:
    """Post ``slide`` as a full-resolution job and wait for it; its seconds and the answer's bytes."""
    start = time.perf_counter()
    with slide.open("rb") as body:
        response = httpx.post(
            f"{url}/api/v1/analyze",
            files={"file": (slide.name, body, "image/tiff")},
            data={"resolution": "full", "samples": str(samples), "mode": "job"},
            timeout=TIMEOUT,
        )
    if response.status_code != 202:
        raise RuntimeError(f"{response.status_code}: {response.text}")
    status_url = response.json()["status_url"]
    while True:
        status = httpx.get(f"{url}{status_url}", timeout=60).json()
        if status["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(1.0)
    if status["state"] != "done":
        raise RuntimeError(f"the job ended {status['state']}: {status.get('error')}")
    answer = httpx.get(f"{url}{status['result_url']}", timeout=600)
    answer.raise_for_status()
    return time.perf_counter() - start, len(answer.content)


def main() -> int:
    """One fresh server per size; one table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, nargs="+", default=[12, 100], help="slide sizes; the first is the reference")
    parser.add_argument("--samples", type=int, default=0)
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--max-pixels", type=int, default=1_000_000, help="the server's SEGU_MAX_PIXELS (larger tiled TIFFs are read in windows)")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for megapixels in args.megapixels:
            slide = Path(tmp) / f"slide{megapixels:g}.tif"
            height, width = write_slide(slide, megapixels)
            stores = Path(tmp) / f"stores{megapixels:g}"
            env = {**os.environ, "SEGU_MAX_BODY_BYTES": str(2**30), "SEGU_STORE_DIR": str(stores), "SEGU_JOB_TIMEOUT": str(TIMEOUT)}
            env["SEGU_MAX_PIXELS"], env["SEGU_CACHE_BYTES"] = str(args.max_pixels), str(2**36)
            command = [sys.executable, "-m", "app", "serve", "--port", str(args.port), "--device", "cpu"]
            server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_ready(url, server)
                ready = proc_kib(server.pid, "VmRSS")
                seconds, answer = run_job(url, slide, args.samples)
                peak = proc_kib(server.pid, "VmHWM")
                store = sum(p.stat().st_size for p in stores.rglob("*") if p.is_file())
            finally:
                server.terminate()
                server.wait(timeout=60)
            rows.append((height, width, slide.stat().st_size, ready, peak, seconds, answer, store))
            slide.unlink()
            print(f"{width}x{height}: done in {seconds:.0f} s", file=sys.stderr)
    print(f"POST /api/v1/analyze of tiled BigTIFFs (256 px tiles, zlib), resolution=full, T = {args.samples}, default model, a job")
    header = f"{'size':>12} {'MP':>6} {'TIFF MB':>8} {'ready GiB':>10} {'peak GiB':>9} {'growth GiB':>11} {'vs first':>9} {'job s':>7}"
    print(header + f" {'answer MB':>10} {'store MB':>9}")
    first = rows[0][4] - rows[0][3]
    for height, width, tiff, ready, peak, seconds, answer, store in rows:
        growth = peak - ready
        print(
            f"{f'{width}x{height}':>12} {height * width / 1e6:6.1f} {tiff / 1e6:8.0f} {ready / 2**20:10.2f} {peak / 2**20:9.2f} {growth / 2**20:11.2f}"
            f" {(growth - first) / 1024:+8.0f}M {seconds:7.1f} {answer / 1e6:10.1f} {store / 1e6:9.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
