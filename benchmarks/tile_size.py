"""What larger sliding-window tiles would buy the deterministic full-resolution pass, and what they cost in memory.

For each ``--tiles`` side (pixels; overlap ``--overlap`` px, the engine's seam-safe 96 by default) the astronaut photo,
resized to ``--width`` x ``--height``, is analysed in a fresh subprocess with ``T = --samples`` (the tile forced, the
memory budget lifted); printed per tile: the tiles and how many times they cover the image, the seconds, the network's
own time on the same number of pixels (one forward of a tile-sized input, timed in the same subprocess, per pixel, times
the image's pixels) and their ratio, and the peak resident memory over the process's just before (torch, smp and the
model loaded).

Usage: python benchmarks/tile_size.py [--tiles 352 736 1024] [--samples 0] [--width 2000] [--height 1500] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import network_seconds


def _measure(side: int, overlap: int, samples: int, width: int, height: int, threads: int) -> dict[str, float]:
    import numpy as np
    import torch
    from PIL import Image
    from skimage import data

    from app.engine.sampling import SamplingOptions
    from app.engine.sliding_window import plan_grid, sliding_window_mc
    from app.io.bundle import load_bundle

    torch.set_num_threads(threads)
    bundle = load_bundle("default")
    net, norm = bundle.net, bundle.card.normalization
    rgb = np.asarray(Image.fromarray(data.astronaut()).resize((width, height)))
    network = network_seconds(net, (side, side), width * height, rounds=3)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    stride = net.stride
    grid = plan_grid(height + (-height) % stride, width + (-width) % stride, (side, side), stride, overlap)
    options = SamplingOptions(samples=samples, seed=1, density=bundle.density, estimator="sampled", memory_budget=2**40)
    start = time.perf_counter()
    sliding_window_mc(net, rgb, norm.mean, norm.std, len(bundle.card.classes), grid, options, class_arrays=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    tiles = len(grid.tops) * len(grid.lefts)
    return {"tiles": tiles, "cover": tiles * grid.tile[0] * grid.tile[1] / (width * height), "seconds": seconds, "network": network, "base": base, "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, nargs="+", default=[352, 736, 1024])
    parser.add_argument("--overlap", type=int, default=96)
    parser.add_argument("--samples", type=int, default=0)
    parser.add_argument("--width", type=int, default=2000)
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_measure(args.child, args.overlap, args.samples, args.width, args.height, args.threads)))
        return
    print(f"astronaut {args.width}x{args.height}, T = {args.samples}, overlap {args.overlap} px, {args.threads} thread(s)")
    print(f"{'tile':>6} {'tiles':>6} {'cover':>6} {'s':>7} {'net s':>7} {'/ net':>6} {'base GiB':>9} {'peak GiB':>9} {'+GiB':>6}")
    for side in args.tiles:
        command = [sys.executable, __file__, "--child", str(side), *sys.argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{side:>6} {r['tiles']:>6} {r['cover']:>6.2f} {r['seconds']:>7.2f} {r['network']:>7.2f} {r['seconds'] / r['network']:>6.2f}"
            f" {r['base']:>9.2f} {r['peak']:>9.2f} {r['peak'] - r['base']:>6.2f}"
        )


if __name__ == "__main__":
    main()
