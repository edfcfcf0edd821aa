"""Write the page's example images into static/examples/ (the row of examples a newcomer can click; app/web/examples.py).

- ``synthetic_scene.png``: a test scene of the synthetic data the ``default`` model was trained on (``make_scene("test", 0)``, 256 px);
- ``astronaut.jpg``, ``cat.jpg``, ``coffee.jpg``: ``skimage.data.astronaut``, ``chelsea`` and ``coffee`` (public domain / CC0; see
  static/examples/SOURCES.md), for the ``person`` model: a portrait, an animal, a photo without a person.

Photos are written as JPEG (quality 90) to keep the page light; the script is deterministic, so rerunning it rewrites the same files.

    .venv/bin/python scripts/make_examples.py [--out static/examples]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from app.io.synthetic import make_scene

ROOT = Path(__file__).resolve().parents[1]
JPEG_QUALITY = 90
SCENE_SIZE = 256


def example_images() -> dict[str, np.ndarray]:
    """Each example's file name and its RGB pixels (uint8)."""
    scene = make_scene("test", 0, size=SCENE_SIZE).image
    return {
        "synthetic_scene.png": np.asarray(scene, dtype=np.uint8),
        "astronaut.jpg": data.astronaut(),
        "cat.jpg": data.chelsea(),
        "coffee.jpg": data.coffee(),
    }


def write_examples(out: Path) -> list[Path]:
    """Write every example into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rgb in example_images().items():
        path = out / name
        image = Image.fromarray(rgb, "RGB")
        if name.endswith(".png"):
            image.save(path, optimize=True)
        else:
            image.save(path, quality=JPEG_QUALITY, optimize=True)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "static" / "examples")
    args = parser.parse_args()
    for path in write_examples(args.out):
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
