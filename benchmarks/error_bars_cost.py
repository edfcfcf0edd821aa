"""What an analysis with its MC error bars costs, next to one deterministic pass, per estimator.

On the default model, over the same padded input (a real photo, skimage's astronaut, resized to each size and analysed
at full resolution, i.e. whole), in interleaved rounds (each round sees the same machine conditions) of:

- the deterministic pass (``T = 0``);
- each estimator with ``T`` samples, without error bars (``error_groups=0``) and with them (10 groups): ``sampled``
  (the textbook plug-in, the reference), ``rao_blackwellised`` (``--enumerated`` channels per pixel exact) and
  ``propagated`` (the same channels exact, the rest to second order: no samples, no bars, so its two columns agree).

Printed per size and estimator: median times, the medians of the per-round ratios "with bars / deterministic" (target
≤ 2.0) and "bars / analysis" = (with − without) / with (target ≤ 0.10).

Usage: python benchmarks/error_bars_cost.py [--sizes 512] [--samples 20] [--rounds 9] [--threads 2] [--enumerated 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from app.defaults import ENUMERATED_CHANNELS
from app.engine.geometry import pad_to_stride, to_tensor
from app.engine.sampling import SamplingOptions, run_mc
from app.io.bundle import load_bundle

ESTIMATORS = ("sampled", "rao_blackwellised", "propagated")


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def photo(size: int) -> np.ndarray:
    """skimage's astronaut at ``size × size``."""
    import skimage.data

    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((size, size), Image.Resampling.LANCZOS))  # type: ignore[no-untyped-call]


def main() -> int:
    """Interleaved rounds, one table."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512])
    p.add_argument("--samples", type=int, nargs="+", default=[20])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--enumerated", type=int, default=ENUMERATED_CHANNELS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_bundle("default")
    net, card = bundle.net, bundle.card
    print(
        "| size | T | estimator | deterministic (ms) | without bars (ms) | with bars (ms) | with bars / deterministic (target ≤ 2.0) "
        "| bars / analysis (target ≤ 0.10) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        x, _ = pad_to_stride(to_tensor(photo(size), tuple(card.normalization.mean), tuple(card.normalization.std)), net.stride)
        for samples in args.samples:
            runs: dict[str, SamplingOptions] = {"deterministic": SamplingOptions(samples=0)}
            for estimator in ESTIMATORS:
                with_bars = SamplingOptions(samples=samples, seed=0, estimator=estimator, enumerated=args.enumerated)  # type: ignore[arg-type]
                runs[f"{estimator} with"], runs[f"{estimator} without"] = with_bars, replace(with_bars, error_groups=0)
            for options in runs.values():
                run_mc(net, x, options)
            times: dict[str, list[float]] = {key: [] for key in runs}
            for _ in range(args.rounds):
                for key, options in runs.items():
                    times[key].append(_seconds(lambda o=options, xx=x: run_mc(net, xx, o)))  # type: ignore[misc]
            det = times["deterministic"]
            for estimator in ESTIMATORS:
                with_, without = times[f"{estimator} with"], times[f"{estimator} without"]
                ratio = statistics.median(w / d for w, d in zip(with_, det, strict=True))
                bars = statistics.median((w - o) / w for w, o in zip(with_, without, strict=True))
                print(
                    f"| {size}² | {samples} | {estimator} | {1000 * statistics.median(det):.0f} | {1000 * statistics.median(without):.0f} | "
                    f"{1000 * statistics.median(with_):.0f} | {ratio:.2f} | {bars:.2f} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
