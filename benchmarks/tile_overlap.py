"""How much the sliding windows' overlap costs and what less of it changes, side by side in one run.

For each ``--overlaps`` value (pixels; ``default``: the engine's rule) on two photos that ship with scikit-image
(``astronaut`` and ``chelsea``, resized to ``--width`` x ``--height``), with the tile the default budget picks for a
12-megapixel photo (``--tile``, 352 px for the default model):

- agreement with one whole-image pass (no windows) of the same image: predictions equal, and per map the mean and
  99th percentile of ``|Δ|`` (``T = --samples``, same seed);
- the deterministic pass's cost (``T = 0``, median of ``--rounds``) over the network's own time on the same number of
  pixels (one forward of a tile-sized input, per pixel, times the image's pixels).

Usage: python benchmarks/tile_overlap.py [--overlaps default 64 32] [--tile 352] [--width 1024] [--height 768] [--samples 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from common import network_seconds
from PIL import Image

from app.engine.sampling import SamplingOptions
from app.engine.sliding_window import plan_grid, sliding_window_mc
from app.io.bundle import load_bundle
from app.maps.registry import SAMPLED_MAPS
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer


def _photos(width: int, height: int) -> dict[str, np.ndarray]:
    from skimage import data

    out = {}
    for name in ("astronaut", "chelsea"):
        rgb = np.ascontiguousarray(getattr(data, name)())
        out[name] = np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BICUBIC))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overlaps", nargs="+", default=["default", "64", "32"])
    parser.add_argument("--tile", type=int, default=352)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = load_bundle(args.model)
    analyzer = Analyzer(bundle, memory_budget=2**34)
    net, norm = bundle.net, bundle.card.normalization
    classes = len(bundle.card.classes)
    stride = net.stride
    hp, wp = args.height + (-args.height) % stride, args.width + (-args.width) % stride
    network = network_seconds(net, (args.tile, args.tile), args.width * args.height, rounds=args.rounds + 2)
    print(f"{args.model}: tile {args.tile} px, {args.width}x{args.height}, T = {args.samples}; network alone {network:.2f} s on these pixels")
    print(f"{'overlap':>8} {'tiles':>6} {'T=0 s':>7} {'/ network':>10} {'photo':>10} {'agree %':>8} " + " ".join(f"{m[:12]:>12}" for m in SAMPLED_MAPS))
    for photo, rgb in _photos(args.width, args.height).items():
        whole = analyzer.analyze_image(rgb, AnalysisRequest(samples=args.samples, seed=1, resolution="full"))
        for overlap in args.overlaps:
            grid = plan_grid(hp, wp, (args.tile, args.tile), stride, None if overlap == "default" else int(overlap))

            def run(samples: int, grid=grid, rgb=rgb) -> object:
                options = SamplingOptions(samples=samples, seed=1, density=bundle.density, estimator="sampled")
                return sliding_window_mc(net, rgb, norm.mean, norm.std, classes, grid, options, class_arrays=False)

            tiled = run(args.samples)
            seconds = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                run(0)
                seconds.append(time.perf_counter() - start)
            t0 = statistics.median(seconds)
            agree = float((tiled.prediction[0].numpy() == whole.prediction).mean())  # type: ignore[attr-defined]
            diffs = []
            for name in SAMPLED_MAPS:
                d = np.abs(getattr(tiled, name)[0].numpy() - whole.maps[name])
                diffs.append(f"{d.mean():.4f}/{np.percentile(d, 99):.3f}")
            print(
                f"{overlap if overlap == 'default' else overlap + ' px':>8} {len(grid.tops) * len(grid.lefts):>6} {t0:7.2f} {t0 / network:10.2f}"
                f" {photo:>10} {100 * agree:8.2f} " + " ".join(f"{d:>12}" for d in diffs)
            )
    print("per map: mean |Δ| / 99th percentile |Δ| against one whole-image pass")


if __name__ == "__main__":
    main()
