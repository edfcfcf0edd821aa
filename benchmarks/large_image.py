"""A 12-megapixel photo at working resolution and at full resolution: seconds and peak memory, side by side.

Makes a 4000x3000 JPEG (quality 90) from a photo that ships with scikit-image (``skimage.data.chelsea``,
resized; a synthetic scene when scikit-image is missing) and measures, each method alone in a fresh process
that has loaded the default model and run one small warm-up analysis:

(a) decode:         ``Analyzer.decode`` of the JPEG bytes;
(b) working:        ``Analyzer.analyze_image`` of the decoded image at default settings (working resolution, T = 20);
(c) bytes→working:  ``Analyzer.analyze_bytes`` (decode + working-resolution analysis: what an upload costs);
(d) full:           ``Analyzer.analyze_image(..., resolution="full")``: every pixel, sliding windows;
(e) full, engine:   the sliding-window engine alone (``analyse_rgb``: (d) without the region table and the copies
                    to the Analysis), whose working memory is what the memory budget bounds.

Seconds are the median and the minimum over ``--rounds`` runs ((d): one run); on a shared machine the
minimum is the figure least disturbed by other processes (two OpenMP threads on two busy cores stall). Peak growth is the peak resident memory during
the call minus the resident memory before it (VmHWM after a reset through ``/proc/self/clear_refs``);
"result" is what the returned Analysis holds (its arrays' bytes), "working" is growth minus result: the
memory the analysis needed on top of what it returns.

Targets: (c) <= 3 s and peak growth <= 500 MB; (e) completes with its working memory within the budget.

Usage: python benchmarks/large_image.py [--rounds 5] [--samples 20] [--model default]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import phone_photo

from app.engine.analysis import Analysis
from app.engine.sampling import SamplingOptions
from app.engine.sliding_window import analyse_rgb
from app.io.bundle import load_bundle
from app.io.synthetic import make_scene
from app.maps.moments import UncertaintyMaps
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

METHODS = ("a decode", "b working", "c bytes→working", "d full", "e full, engine")
MiB = 2**20


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure(fn: Callable[[], object]) -> tuple[float, int, object]:
    """Seconds, peak extra resident bytes and the result of one call."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    base = _status("VmRSS")
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    return seconds, max(_status("VmHWM") - base, 0), result


def result_bytes(analysis: Analysis) -> int:
    """Bytes of the arrays an Analysis holds (views of one buffer counted once)."""
    arrays = [analysis.image, analysis.prediction, analysis.mean_probs, analysis.probs, analysis.class_variance, *analysis.maps.values()]
    seen: dict[int, int] = {}
    for a in arrays:
        base = a.base if isinstance(a.base, np.ndarray) else a
        seen[id(base)] = max(seen.get(id(base), 0), a.nbytes)
    return sum(seen.values())


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Run one method in this process and return its figures."""
    analyzer = Analyzer(load_bundle(args.model))
    analyzer.analyze_image(make_scene("test", 0, size=256).image, AnalysisRequest(samples=args.samples))
    jpeg = Path(args.jpeg).read_bytes()
    rgb = analyzer.decode(jpeg)
    norm = analyzer.bundle.card.normalization
    options = SamplingOptions(samples=args.samples, memory_budget=analyzer.memory_budget)
    runs: dict[str, Callable[[], object]] = {
        "a decode": lambda: analyzer.decode(jpeg),
        "b working": lambda: analyzer.analyze_image(rgb, AnalysisRequest(samples=args.samples)),
        "c bytes→working": lambda: analyzer.analyze_bytes(jpeg, AnalysisRequest(samples=args.samples)),
        "d full": lambda: analyzer.analyze_image(rgb, AnalysisRequest(samples=args.samples, resolution="full")),
        "e full, engine": lambda: analyse_rgb(analyzer.bundle.net, rgb, norm.mean, norm.std, len(analyzer.bundle.card.classes), options, analyzer.cost)[0],
    }
    rounds = 1 if args.method.endswith(("full", "engine")) else args.rounds
    figures = [measure(runs[args.method]) for _ in range(rounds)]
    out = figures[-1][2]
    seconds = [f[0] for f in figures]
    info: dict[str, Any] = {"seconds": statistics.median(seconds), "min": min(seconds), "peak": max(f[1] for f in figures), "result": 0, "size": "", "tile": ""}
    if isinstance(out, Analysis):
        info["result"] = result_bytes(out)
        info["size"] = f"{out.width}x{out.height}"
        grid = analyzer.tile_grid(out.height, out.width)
        info["tile"] = "whole" if grid is None else f"{grid.tile[1]}x{grid.tile[0]} ({len(grid.tops) * len(grid.lefts)})"
        info["budget"] = analyzer.memory_budget
        info["cost"] = [analyzer.cost.fixed, analyzer.cost.sample, analyzer.cost.band]
    elif isinstance(out, UncertaintyMaps):
        arrays = (out.prediction, *out.scalar_maps().values(), out.probs, out.mean_probs, out.class_variance)
        info["result"] = sum(t.numel() * t.element_size() for t in arrays)
        info["size"] = f"{out.prediction.shape[-1]}x{out.prediction.shape[-2]}"
        grid = analyzer.tile_grid(rgb.shape[0], rgb.shape[1])
        info["tile"] = "whole" if grid is None else f"{grid.tile[1]}x{grid.tile[0]} ({len(grid.tops) * len(grid.lefts)})"
    elif isinstance(out, np.ndarray):
        info["result"] = out.nbytes
        info["size"] = f"{out.shape[1]}x{out.shape[0]}"
    return info


def main() -> None:
    """Run every method in a fresh process and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--method", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--jpeg", default="/tmp/seg_uncertainty_large_image.jpg", help="where the test JPEG is written")
    args = parser.parse_args()
    if args.method:
        print(json.dumps(child(args)))
        return
    jpeg = phone_photo()
    Path(args.jpeg).write_bytes(jpeg)
    rows: dict[str, dict[str, Any]] = {}
    for name in METHODS:
        cmd = [sys.executable, __file__, "--model", args.model, "--samples", str(args.samples), "--rounds", str(args.rounds)]
        cmd += ["--jpeg", args.jpeg, "--method", name]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600)
        rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
    full = rows["d full"]
    print(f"model={args.model} T={args.samples} JPEG 4000x3000 {len(jpeg) / MiB:.2f} MiB  budget={int(full['budget']) / MiB:.0f} MiB  cost/px={full['cost']}")
    print(f"{'method':<18}{'analysed':>11}{'tile (n)':>16}{'median s':>10}{'min s':>8}{'peak MiB':>10}{'result MiB':>12}{'working MiB':>13}")
    for name, r in rows.items():
        peak, result = int(r["peak"]), int(r["result"])
        figures = f"{r['seconds']:>10.2f}{r['min']:>8.2f}{peak / MiB:>10.0f}{result / MiB:>12.0f}{(peak - result) / MiB:>13.0f}"
        print(f"{name:<18}{r['size']:>11}{r['tile']:>16}{figures}")
    upload = rows["c bytes→working"]
    ok_time = float(upload["seconds"]) <= 3.0
    ok_mem = int(upload["peak"]) <= 500e6
    print(f"(c) upload at working resolution: {upload['seconds']:.2f} s (target <= 3 s {'OK' if ok_time else 'MISSED'}), ", end="")
    print(f"peak growth {int(upload['peak']) / 1e6:.0f} MB (target <= 500 MB {'OK' if ok_mem else 'MISSED'})")
    engine = rows["e full, engine"]
    working = int(engine["peak"]) - int(engine["result"])
    budget = int(full["budget"])
    print(f"(d) full resolution: {full['seconds']:.1f} s ({full['seconds'] / rows['b working']['seconds']:.0f}x (b)); ", end="")
    print(f"(e) engine working memory {working / MiB:.0f} MiB vs budget {budget / MiB:.0f} MiB ({'within' if working <= budget else 'OVER'})")


if __name__ == "__main__":
    main()
