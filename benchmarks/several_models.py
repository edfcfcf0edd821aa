"""What serving a second model costs, side by side with one: start-up time, resident memory and request latency.

Starts ``seg-uncertainty serve`` twice in a subprocess: once with the default model, once with it and a renamed copy
(``--model default --model <copy>``), both running at once. Requests of a 600x400 JPEG at T = 20 go to the two servers
in turn, one at a time; the two-model server's alternate between its models. Prints time to ready, resident memory once
ready, median latency, and the ratios two/one.

    .venv/bin/python benchmarks/several_models.py [--requests 20]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import phone_photo, proc_kib, wait_ready

ROOT = Path(__file__).resolve().parents[1]


def copy_default(folder: Path) -> Path:
    """The default bundle under another card name."""
    out = folder / "default-copy"
    shutil.copytree(ROOT / "models" / "default", out)
    card = json.loads((out / "model.json").read_text())
    card["name"] = "default-copy"
    (out / "model.json").write_text(json.dumps(card))
    return out


def start(models: list[str], port: int) -> tuple[subprocess.Popen[bytes], float, float]:
    """A server of ``models``: the process, seconds to ready, MiB resident once ready."""
    command = [sys.executable, "-m", "app", "serve", "--port", str(port), "--device", "cpu"]
    for model in models:
        command += ["--model", model]
    started = time.monotonic()
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}", server)
    return server, time.monotonic() - started, proc_kib(server.pid, "VmRSS") / 1024


def analyse(port: int, image: bytes, model: str, seed: int) -> float:
    """Seconds of one analysis of ``image`` at T = 20 by ``model``."""
    t0 = time.perf_counter()
    answer = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/analyze", files={"file": ("p.jpg", image)}, data={"samples": "20", "seed": str(seed), "model": model}, timeout=120
    )
    assert answer.status_code == 200, answer.text
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()
    image = phone_photo(600, 400)
    servers = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            one, one_ready, one_rss = start(["default"], args.port)
            servers.append(one)
            two, two_ready, two_rss = start(["default", str(copy_default(Path(tmp)))], args.port + 1)
            servers.append(two)
            latencies: dict[str, list[float]] = {"one": [], "two": []}
            for i in range(args.requests + 1):  # interleaved, so that the machine's load falls on both alike; the first not counted
                took_one = analyse(args.port, image, "default", i)
                took_two = analyse(args.port + 1, image, ("default", "default-copy")[i % 2], i)
                if i:
                    latencies["one"].append(took_one)
                    latencies["two"].append(took_two)
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
    one_figures = {"ready": one_ready, "rss": one_rss, "latency": statistics.median(latencies["one"])}
    two_figures = {"ready": two_ready, "rss": two_rss, "latency": statistics.median(latencies["two"])}
    out = io.StringIO()
    out.write(f"{'':28}{'one model':>12}{'two models':>12}{'two/one':>10}\n")
    for key, label, unit in (("ready", "start-up to ready", "s"), ("rss", "resident memory, ready", "MiB"), ("latency", "median analysis (T=20)", "s")):
        a, b = one_figures[key], two_figures[key]
        out.write(f"{label + ' (' + unit + ')':28}{a:12.3f}{b:12.3f}{b / a:10.2f}\n")
    print(out.getvalue(), end="")


if __name__ == "__main__":
    main()
