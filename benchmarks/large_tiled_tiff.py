"""Peak memory of ``analyze --full-resolution`` on tiled TIFFs far beyond a photo, side by side with a 12 MP one.

Writes tiled BigTIFFs (256×256 tiles, zlib) of ``skimage.data.astronaut`` scaled up and mirrored, tile by tile (the
image is never whole in memory), of each ``--megapixels`` size at a 4:3 aspect, then runs, each in a fresh process::

    python -m app analyze SLIDE.tif --out DIR --full-resolution --samples T --quiet

and reports per size: the process's peak resident memory (``ru_maxrss``: Python, PyTorch and the model included;
0.8 GiB before any pixel is read), its growth over the 12 MP run's (the issue: independent of the image size), the
engine's and the whole command's seconds, and the bytes written (``maps.zarr`` and the preview PNGs).

Target (the issue's): a 100 MP tiled TIFF analysed with peak memory <= 1 GiB beyond the interpreter's own, and no
growth with the size.

Usage: python benchmarks/large_tiled_tiff.py [--megapixels 12 100] [--samples 0] [--model default]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from full_resolution_memory import GIB, peak_run
from PIL import Image

TILE = 256


def _texture(side: int) -> np.ndarray:
    """``skimage.data.astronaut`` resized to ``side × side`` (bicubic), the pattern the slide repeats, mirrored."""
    from skimage import data

    return np.asarray(Image.fromarray(np.ascontiguousarray(data.astronaut())).resize((side, side), Image.Resampling.BICUBIC))


def slide_tiles(height: int, width: int, texture: np.ndarray) -> Iterator[np.ndarray]:
    """The ``TILE × TILE`` tiles of a ``height × width`` image tiling ``texture`` with mirroring, row by row."""
    side = texture.shape[0]
    for top in range(0, height, TILE):
        for left in range(0, width, TILE):
            rows = np.arange(top, top + TILE) % (2 * side)
            cols = np.arange(left, left + TILE) % (2 * side)
            rows = np.where(rows < side, rows, 2 * side - 1 - rows)
            cols = np.where(cols < side, cols, 2 * side - 1 - cols)
            yield texture[rows[:, None], cols[None, :]]


def write_slide(path: Path, megapixels: float) -> tuple[int, int]:
    """A tiled BigTIFF of about ``megapixels`` at 4:3; its ``(H, W)``."""
    import tifffile

    width = int(math.sqrt(megapixels * 1e6 * 4 / 3)) // TILE * TILE
    height = int(megapixels * 1e6 / width) // TILE * TILE
    tifffile.imwrite(
        path,
        slide_tiles(height, width, _texture(2048)),
        shape=(height, width, 3),
        dtype=np.uint8,
        tile=(TILE, TILE),
        photometric="rgb",
        compression="zlib",
        compressionargs={"level": 1},
        bigtiff=True,
    )
    return height, width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, nargs="+", default=[12, 100], help="slide sizes; the first is the reference")
    parser.add_argument("--samples", type=int, default=0)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for megapixels in args.megapixels:
            slide = Path(tmp) / f"slide{megapixels:g}.tif"
            height, width = write_slide(slide, megapixels)
            out = Path(tmp) / f"out{megapixels:g}"
            command = [sys.executable, "-m", "app", "analyze", str(slide), "--out", str(out), "--full-resolution"]
            command += ["--samples", str(args.samples), "--model", args.model, "--quiet"]
            code, peak, wall = peak_run(command)
            if code != 0:
                raise RuntimeError(f"{' '.join(command)} exited with {code}")
            info = json.loads(next(out.glob("*/analysis.json")).read_text())
            store = sum(p.stat().st_size for p in out.rglob("maps.zarr/**/*") if p.is_file())
            pngs = sum(p.stat().st_size for p in out.rglob("*.png"))
            rows.append((height, width, slide.stat().st_size, peak, info["timings"]["inference"], wall, store, pngs))
            slide.unlink()
            print(f"{width}x{height}: done in {wall:.0f} s", file=sys.stderr)
    print(f"analyze --full-resolution of tiled BigTIFFs (256 px tiles, zlib), T = {args.samples}, model {args.model}")
    print(f"{'size':>12} {'MP':>6} {'TIFF MB':>8} {'peak GiB':>9} {'vs first':>9} {'inference s':>12} {'command s':>10} {'zarr MB':>8} {'PNGs MB':>8}")
    first = rows[0][3]
    for height, width, tiff, peak, inference, wall, store, pngs in rows:
        print(
            f"{f'{width}x{height}':>12} {height * width / 1e6:6.1f} {tiff / 1e6:8.0f} {peak / GIB:9.2f} {(peak - first) / 2**20:+8.0f}M"
            f" {inference:12.1f} {wall:10.1f} {store / 1e6:8.1f} {pngs / 1e6:8.1f}"
        )


if __name__ == "__main__":
    main()
