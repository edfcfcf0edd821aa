"""A phone-sized photo through the real server against the same analysis in-process, side by side in one run.

Makes a 4000x3000 JPEG from a photo that ships with scikit-image (``skimage.data.chelsea``, resized; a synthetic
scene when scikit-image is missing), starts ``seg-uncertainty serve`` with the default model in a subprocess and
measures, interleaved over several rounds:

(a) in-process ``Analyzer.analyze_bytes`` on the JPEG bytes (decode + working-resolution analysis, default settings);
(b) ``POST /api/v1/analyze`` with the page's settings (compact answer), wall time until the whole body is read.

It prints the median of each, (b)/(a), the answer's size in bytes per analysed pixel and the server's peak resident
memory growth (VmHWM after the requests minus VmRSS once ready). Targets: (b)/(a) <= 1.15, <= 4 bytes per analysed
pixel, peak growth <= 500 MB, analysis <= 3 s.

Usage: python benchmarks/http_end_to_end.py [--rounds 5] [--port 8765] [--samples 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import httpx
from common import phone_photo, proc_kib, wait_ready

from app.engine.device import resolve_device
from app.io.bundle import load_bundle
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer


def main() -> int:
    """Run both methods interleaved and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--samples", type=int, default=20)
    args = p.parse_args()
    photo = phone_photo()
    device = resolve_device("cpu")
    analyzer = Analyzer(load_bundle("default", device), device)
    analyzer.analyze_bytes(photo, AnalysisRequest(samples=args.samples))
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(args.port), "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_ready(url, server)
        rss_ready = proc_kib(server.pid, "VmRSS")
        in_process, over_http, sizes = [], [], []
        with httpx.Client(timeout=600) as client:
            for _ in range(args.rounds):
                start = time.perf_counter()
                analysis = analyzer.analyze_bytes(photo, AnalysisRequest(samples=args.samples))
                in_process.append(time.perf_counter() - start)
                start = time.perf_counter()
                response = client.post(f"{url}/api/v1/analyze", files={"file": ("photo.jpg", photo, "image/jpeg")}, data={"samples": str(args.samples)})
                body = response.read()
                over_http.append(time.perf_counter() - start)
                response.raise_for_status()
                sizes.append(len(body))
        peak_growth = (proc_kib(server.pid, "VmHWM") - rss_ready) / 1024
    finally:
        server.terminate()
        server.wait(timeout=30)
    a, b = statistics.median(in_process), statistics.median(over_http)
    pixels = analysis.width * analysis.height
    per_pixel = statistics.median(sizes) / pixels
    print(f"input 4000x3000 JPEG ({len(photo) / 1e6:.2f} MB), analysed at {analysis.width}x{analysis.height}, T = {args.samples}, {args.rounds} rounds")
    print(f"{'method':<28}{'median s':>10}{'min s':>10}")
    print(f"{'a in-process analyze_bytes':<28}{a:>10.3f}{min(in_process):>10.3f}")
    print(f"{'b HTTP POST /api/v1/analyze':<28}{b:>10.3f}{min(over_http):>10.3f}")
    print(f"(b)/(a) = {b / a:.2f}  target <= 1.15  {'OK' if b / a <= 1.15 else 'MISSED'}")
    print(f"analysis (a) = {a:.2f} s  target <= 3 s  {'OK' if a <= 3 else 'MISSED'}")
    print(f"answer {statistics.median(sizes) / 1e3:.1f} kB = {per_pixel:.2f} bytes per analysed pixel  target <= 4  {'OK' if per_pixel <= 4 else 'MISSED'}")
    print(f"server peak RSS growth {peak_growth:.0f} MB  target <= 500  {'OK' if peak_growth <= 500 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
