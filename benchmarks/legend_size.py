"""Bytes the colour bars and the class legend add to ``analyze``'s PNGs (:mod:`app.io.legend`), on a real photo.

Analyses ``skimage.data.astronaut`` (512 x 512, written as a quality-90 JPEG) with the default model at its working
resolution and its default samples, and encodes its PNGs both ways, in memory: bare (the palette PNGs ``analyze`` wrote
before, :func:`app.io.encoding.map_pngs`) and with legends (what it writes now, :func:`app.io.legend.legend_pngs`).

Usage: python benchmarks/legend_size.py [--model default] [--full-resolution]
"""

from __future__ import annotations

import argparse
import io

import torch
from PIL import Image

from app.cli.common import load_analyzer, samples_for
from app.io.encoding import map_pngs
from app.io.legend import legend_pngs
from app.request import AnalysisRequest


def astronaut_jpeg() -> bytes:
    """``skimage.data.astronaut`` as a quality-90 JPEG."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    """Print each PNG's size and size in bytes, bare and with its legend, and the totals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--full-resolution", action="store_true", help="analyse every pixel (512 x 512) instead of the working size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    analyzer = load_analyzer(args.model, "cpu")
    request = AnalysisRequest(samples=samples_for(None, analyzer.bundle.card), resolution="full" if args.full_resolution else "working")
    analysis = analyzer.analyze_bytes(astronaut_jpeg(), request)
    bare, legend = map_pngs(analysis, analyzer.bundle.card, indexed=True), legend_pngs(analysis, analyzer.bundle.card)
    print(f"astronaut analysed at {analysis.width}x{analysis.height}, T = {analysis.samples}")
    print("| PNG | image size with legend | bare bytes | with legend | change |")
    print("|---|---|---|---|---|")
    for name in bare:
        with Image.open(io.BytesIO(legend[name])) as png:
            size = f"{png.width}x{png.height}"
        print(f"| {name} | {size} | {len(bare[name]):,} | {len(legend[name]):,} | {len(legend[name]) / len(bare[name]) - 1:+.1%} |")
    before, after = sum(map(len, bare.values())), sum(map(len, legend.values()))
    print(f"| all {len(bare)} | | {before:,} | {after:,} | {after / before - 1:+.1%} ({after - before:+,} bytes) |")


if __name__ == "__main__":
    main()
