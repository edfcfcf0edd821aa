"""What the MC error bars cost: the engine with its jackknife replicates (10 groups) against the same engine without.

Both run on the default model with T samples over the same padded input, in interleaved pairs (each pair sees the
same machine conditions); printed: the median time of each, the median of the per-pair ratios, and the statistics
memory of each (the grouped sums plus the replicate maps, against one set of sums).

Usage: python benchmarks/error_bars_cost.py [--sizes 256 512] [--samples 20 100] [--pairs 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from app.defaults import MC_GROUPS
from app.engine.geometry import pad_to_stride, to_tensor
from app.engine.sampling import SamplingOptions, run_mc
from app.io.bundle import load_bundle
from app.io.synthetic import make_scene
from app.maps.registry import SAMPLED_MAPS


def _seconds(run: object) -> float:
    start = time.perf_counter()
    run()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> int:
    """Interleaved pairs, one table."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--samples", type=int, nargs="+", default=[20, 100])
    p.add_argument("--pairs", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_bundle("default")
    net, card = bundle.net, bundle.card
    classes = len(card.classes)
    print(f"| size | T | without (ms) | with {MC_GROUPS} groups (ms) | median ratio | statistics MiB without → with |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        rgb = make_scene("test", 0, size=size, seed=0).image
        x, _ = pad_to_stride(to_tensor(rgb, tuple(card.normalization.mean), tuple(card.normalization.std)), net.stride)
        for samples in args.samples:
            with_bars = SamplingOptions(samples=samples, seed=0)
            without = replace(with_bars, error_groups=0)
            run_mc(net, x, with_bars), run_mc(net, x, without)
            plain, grouped, ratios = [], [], []
            for _ in range(args.pairs):
                a = _seconds(lambda: run_mc(net, x, without))  # noqa: B023
                b = _seconds(lambda: run_mc(net, x, with_bars))  # noqa: B023
                plain.append(a)
                grouped.append(b)
                ratios.append(b / a)
            pixels = x.shape[-2] * x.shape[-1]
            base = 4 * pixels * (2 * classes + 1) / 2**20
            groups = min(MC_GROUPS, samples)
            extra = 4 * pixels * groups * (2 * classes + 1 + len(SAMPLED_MAPS)) / 2**20
            print(
                f"| {size}² | {samples} | {1000 * statistics.median(plain):.0f} | {1000 * statistics.median(grouped):.0f} | "
                f"{statistics.median(ratios):.2f} | {base:.1f} → {base + extra:.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
