"""Bytes per image that ``analyze`` writes for a folder of photos: the folder default (the maps as PNGs), ``--save
npz,json`` (what every run wrote before: what files named one by one still get) and ``--save all``.

Writes 15 real photos shipped with scikit-image (``skimage.data``; the grey ones as RGB) as quality-90 JPEGs into a
temporary folder and runs ``seg-uncertainty analyze FOLDER --out OUT`` (default model, its default samples, working
resolution) once per choice, then counts the bytes under each image's output folder (``summary.csv`` apart).

Usage: python benchmarks/folder_output_size.py [--model default]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from app.cli import main as cli

PHOTOS = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "coins",
    "moon",
    "grass",
    "gravel",
    "brick",
    "stereo_motorcycle",
    "stereo_motorcycle:right",
)
CHOICES = (("folder default (maps as PNGs)", []), ("--save npz,json (the earlier default)", ["--save", "npz,json"]), ("--save all", ["--save", "all"]))


def photo(name: str) -> np.ndarray:
    """The ``skimage.data`` photo ``name`` (``stereo_motorcycle:right``: the right view) as ``(H, W, 3)`` uint8."""
    from skimage import data

    base, _, part = name.partition(":")
    image = getattr(data, base)()
    if isinstance(image, tuple):
        image = image[1 if part == "right" else 0]
    image = np.asarray(image)
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3]


def folder_bytes(out: Path) -> tuple[list[int], Counter[str]]:
    """Bytes of each image's output folder, and the bytes of each kind of file over all of them."""
    sizes, kinds = [], Counter[str]()
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        files = [f for f in folder.rglob("*") if f.is_file()]
        sizes.append(sum(f.stat().st_size for f in files))
        for f in files:
            kinds[".png" if f.suffix == ".png" else f.name] += f.stat().st_size
    return sizes, kinds


def main() -> None:
    """Print bytes per image for each choice."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for name in PHOTOS:
            Image.fromarray(photo(name)).save(photos / f"{name.replace(':', '_')}.jpg", quality=90)
        print(f"{len(PHOTOS)} photos, {sum(p.stat().st_size for p in photos.iterdir()) / len(PHOTOS):,.0f} bytes of JPEG each on average")
        print("| written | bytes per image (mean) | min | max | of which |")
        print("|---|---|---|---|---|")
        for label, extra in CHOICES:
            out = Path(tmp) / f"out{len(extra)}{extra[-1] if extra else ''}"
            assert cli(["analyze", str(photos), "--out", str(out), "--model", args.model, "--quiet", *extra]) == 0
            sizes, kinds = folder_bytes(out)
            parts = ", ".join(f"{kind} {size / len(sizes):,.0f}" for kind, size in sorted(kinds.items()))
            print(f"| {label} | {np.mean(sizes):,.0f} | {min(sizes):,} | {max(sizes):,} | {parts} |")


if __name__ == "__main__":
    main()
