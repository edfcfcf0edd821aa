"""Peak memory and time of ``analyze --full-resolution`` on a 12-megapixel JPEG, at ``T = 20`` and ``T = 0``, side by side.

Makes a ``--width`` x ``--height`` JPEG (quality 90) from ``skimage.data.astronaut`` (resized with PIL, bicubic) and runs
the command of the issue "Full resolution at scale" once per sample count, each in a fresh process::

    python -m app analyze PHOTO --out DIR --full-resolution --samples T --quiet

and reports, per run: the peak resident memory of that process (``ru_maxrss`` from ``os.wait4``: the whole command,
Python, torch and the model included), the analysis's own timings from its ``analysis.json`` (``inference``: the
engine; ``total``: decode to region table), the command's wall time and the bytes of its output folder. The last
line is the inference ratio ``T = 20 / T = 0`` the issue bounds by 2.0.

Targets (the issue's): peak <= 1.5 GiB at 4000 x 3000 (stretch: <= 1 GiB); inference ratio <= 2.0. With several
``--memory-budget`` sizes, every sample count runs at each, and the ratio is printed per budget (the trade-off of
memory for time).

Usage: python benchmarks/full_resolution_memory.py [--width 4000] [--height 3000] [--samples 20 0] [--model default] [--save NAMES]
       [--format auto|npz|zarr] [--memory-budget SIZE [SIZE ...]]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

GIB = 2**30
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Run:
    """One command's figures."""

    samples: int
    budget: str
    peak_bytes: int
    wall: float
    timings: dict[str, float]
    output_bytes: int


def astronaut_jpeg(width: int, height: int) -> bytes:
    """``skimage.data.astronaut`` resized to ``width x height`` (bicubic), as a quality-90 JPEG."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(data.astronaut())).resize((width, height), Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def peak_run(command: list[str]) -> tuple[int, int, float]:
    """Run ``command``; its exit status, its peak resident bytes (``ru_maxrss`` of that process alone) and its wall seconds."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss * 1024, time.perf_counter() - started


def analyse(photo: Path, out: Path, samples: int, model: str, save: str | None, store_format: str | None = None, budget: str | None = None) -> Run:
    """``analyze --full-resolution`` of ``photo`` into ``out`` with ``T = samples`` (and ``--memory-budget budget`` when given).

    Raises:
        RuntimeError: the command failed.
    """
    command = [sys.executable, "-m", "app", "analyze", str(photo), "--out", str(out), "--full-resolution", "--samples", str(samples)]
    command += ["--model", model, "--quiet", *(["--save", save] if save else []), *(["--format", store_format] if store_format else [])]
    command += ["--memory-budget", budget] if budget else []
    code, peak, wall = peak_run(command)
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {code}")
    info = json.loads(next(out.glob("*/analysis.json")).read_text())
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return Run(samples, budget or "default", peak, wall, {k: float(v) for k, v in info["timings"].items()}, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--samples", type=int, nargs="+", default=[20, 0], help="one run per value; the ratio compares the first with 0")
    parser.add_argument("--model", default="default")
    parser.add_argument("--save", default=None, help="analyze --save NAMES (default: none, the command's default)")
    parser.add_argument("--format", default=None, choices=("auto", "npz", "zarr"), help="analyze --format (default: the command's, auto)")
    parser.add_argument("--memory-budget", nargs="+", default=[None], metavar="SIZE", help="analyze --memory-budget, each in turn (default: the command's)")
    args = parser.parse_args()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "astronaut.jpg"
        photo.write_bytes(astronaut_jpeg(args.width, args.height))
        for budget in args.memory_budget:
            for samples in args.samples:
                runs.append(analyse(photo, Path(tmp) / f"out{samples}-{budget}", samples, args.model, args.save, args.format, budget))
                print(f"T = {samples}, budget {runs[-1].budget}: done in {runs[-1].wall:.1f} s", file=sys.stderr)
    pixels = args.width * args.height
    print(
        f"analyze --full-resolution, {args.width}x{args.height} = {pixels / 1e6:.1f} MP astronaut JPEG, model {args.model}, "
        f"--save {args.save or '(none)'}, --format {args.format or '(default)'}"
    )
    print(f"{'budget':>8} {'T':>3} {'peak GiB':>9} {'peak B/px':>10} {'inference s':>12} {'analysis s':>11} {'command s':>10} {'output MB':>10}")
    for run in runs:
        print(
            f"{run.budget:>8} {run.samples:>3} {run.peak_bytes / GIB:9.2f} {run.peak_bytes / pixels:10.1f} {run.timings.get('inference', float('nan')):12.1f}"
            f" {run.timings.get('total', float('nan')):11.1f} {run.wall:10.1f} {run.output_bytes / 1e6:10.1f}"
        )
    for budget in dict.fromkeys(run.budget for run in runs):
        mine = [run for run in runs if run.budget == budget]
        base = next((r for r in mine if r.samples == 0), None)
        if base is not None and mine[0].samples != 0:
            sampled = mine[0]
            ratio = sampled.timings["inference"] / base.timings["inference"]
            print(f"budget {budget}: inference ratio T = {sampled.samples} / T = 0: {ratio:.2f} (target <= 2.0)")


if __name__ == "__main__":
    main()
