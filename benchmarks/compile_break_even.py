"""When compiling the estimator's kernels pays for itself in one ``analyze`` command: the compilation's one-off cost
against what it saves per photo, side by side in fresh processes.

Each mode runs in its own process (compilation is process-wide and the first call of each kernel compiles it):
``--photos`` photos of ``skimage.data`` (astronaut, chelsea, coffee, rocket, in turn), each analysed
at the working resolution with the default estimator and ``--samples``, one PyTorch thread. Prints, per mode, the
first photo's seconds and the median of the others, then the break-even: the number of photos after which the
compiled command is the faster one (``compile cost / saving per photo``). ``analyze --compile-kernels auto`` compiles
from that many images on (``COMPILE_MIN_IMAGES`` in ``app/cli/analyze.py``).

Usage: python benchmarks/compile_break_even.py [--photos 12] [--samples 20] [--model default]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")

CHILD = """
import json, sys, time
import numpy as np, torch
from skimage import data
from app.engine.compiled import set_compilation
from app.io.bundle import load_bundle
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

compile_, photos, samples, model = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(1)
set_compilation(compile_)
analyzer = Analyzer(load_bundle(model))
names = sys.argv[5].split(",")
seconds = []
for i in range(photos):
    rgb = np.ascontiguousarray(getattr(data, names[i % len(names)])()[..., :3])
    start = time.perf_counter()
    analyzer.analyze_image(rgb, AnalysisRequest(samples=samples, seed=i))
    seconds.append(time.perf_counter() - start)
print(json.dumps(seconds))
"""


def run(compiled: bool, photos: int, samples: int, model: str) -> list[float]:
    """Seconds per photo of one fresh process, compiling or not."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, "1" if compiled else "0", str(photos), str(samples), model, ",".join(PHOTOS)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return [float(s) for s in json.loads(out.stdout.strip().splitlines()[-1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    eager = run(False, args.photos, args.samples, args.model)
    compiled = run(True, args.photos, args.samples, args.model)
    print(f"{args.photos} photos at the working resolution, T = {args.samples}, model {args.model}, one thread")
    print(f"{'mode':>9} {'first s':>8} {'median of the rest s':>21} {'all s':>7}")
    for name, seconds in (("eager", eager), ("compiled", compiled)):
        print(f"{name:>9} {seconds[0]:8.2f} {statistics.median(seconds[1:]):21.3f} {sum(seconds):7.2f}")
    saving = statistics.median(eager[1:]) - statistics.median(compiled[1:])
    cost = compiled[0] - eager[0]
    speed = statistics.median(eager[1:]) / statistics.median(compiled[1:])
    print(f"compiling costs {cost:.1f} s once and saves {saving:.3f} s a photo", end="")
    print(f" ({speed:.2f}x): break-even at {cost / saving:.0f} photos" if saving > 0 else ": never pays")


if __name__ == "__main__":
    main()
