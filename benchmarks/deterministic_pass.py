"""The deterministic full-resolution pass against the network's own time on the same pixels (the issue's 1.3× target).

Decodes a ``--width`` x ``--height`` JPEG of ``skimage.data.astronaut`` (quality 90, as ``full_resolution_memory.py``
makes it), plans the sliding windows a streamed analysis at T = 0 uses (``stream_grid``), and in one process, with
``--threads`` PyTorch threads:

* times the network alone: one forward of a tile-sized input (median of 5, after a warm-up) per pixel, times the
  image's pixels;
* runs the engine's pass (``blended_bands`` at T = 0, every band finalised; the store, the summaries and the
  components left out), timing the network's calls inside it (``prefix`` and ``tail``) apart from the rest.

Prints the tiles and their cover, the pass, the network's share of it, and the ratios: pass / network (the target:
<= 1.3), the network inside the pass / network (the cover, plus what a tile's edge costs the network) and the rest /
network (blending, feature density, finalising).

Usage: python benchmarks/deterministic_pass.py [--width 4000] [--height 3000] [--threads 1] [--model default] [--memory-budget 512M]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from common import network_seconds
from full_resolution_memory import astronaut_jpeg
from PIL import Image


def timed(call: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    """``call``, adding each call's seconds to ``spent[0]``."""

    def run(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="default")
    parser.add_argument("--memory-budget", default="512M", metavar="SIZE", help="the analyser's memory budget (as analyze --memory-budget)")
    args = parser.parse_args()

    from app.cli.common import memory_size
    from app.engine.sampling import SamplingOptions
    from app.engine.sliding_window import blended_bands
    from app.io.bundle import load_bundle
    from app.request import AnalysisRequest
    from app.workflows.analyzer import Analyzer
    from app.workflows.stream_analysis import stream_grid

    torch.set_num_threads(args.threads)
    rgb = np.asarray(Image.open(io.BytesIO(astronaut_jpeg(args.width, args.height))).convert("RGB"))
    analyzer = Analyzer(load_bundle(args.model), memory_budget=memory_size(args.memory_budget))
    bundle, net = analyzer.bundle, analyzer.bundle.net
    grid, budget = stream_grid(analyzer, args.height, args.width, AnalysisRequest(samples=0, resolution="full"))
    th, tw = grid.tile
    network = network_seconds(net, (th, tw), args.width * args.height)

    spent = [0.0]
    net.prefix = timed(net.prefix, spent)  # type: ignore[method-assign]
    net.tail = timed(net.tail, spent)  # type: ignore[method-assign]
    options = SamplingOptions(samples=0, seed=0, memory_budget=budget, density=bundle.density, estimator="sampled")
    norm = bundle.card.normalization
    start = time.perf_counter()
    for band in blended_bands(net, rgb, norm.mean, norm.std, len(bundle.card.classes), grid, options, {}):
        for _block in band.blocks():
            pass
    seconds = time.perf_counter() - start
    tiles = len(grid.tops) * len(grid.lefts)
    cover = tiles * th * tw / (args.width * args.height)
    print(f"{args.model}, {args.width}x{args.height}, T = 0, {args.threads} thread(s), budget {args.memory_budget}: ", end="")
    print(f"{tiles} tiles of {th}x{tw} (overlap {grid.overlap[0]} px), cover {cover:.2f}")
    print(f"  network alone on the image's pixels: {network:.1f} s ({network / (args.width * args.height) * 1e9:.0f} ns a pixel, one {th}x{tw} forward)")
    print(f"  the pass: {seconds:.1f} s, of which the network's calls {spent[0]:.1f} s and the rest {seconds - spent[0]:.1f} s")
    print(f"  pass / network: {seconds / network:.2f} (target <= 1.3)", end="; ")
    print(f"network in the pass / network: {spent[0] / network:.2f}; rest / network: {(seconds - spent[0]) / network:.2f}")


if __name__ == "__main__":
    main()
