"""Write the photos the person model's feature density is fitted on into a folder, for ``seg-uncertainty fit-density``.

Every photo that ships inside an installed package and is not one of the page's examples (astronaut, chelsea, coffee:
static/examples/, the seed's own example in docs/person.md), so those stay unseen by the fit:

- scikit-image's colour photos: rocket, hubble_deep_field, retina, immunohistochemistry, the left view of stereo_motorcycle;
- scikit-image's greyscale photos, as RGB (the grey value in each channel): camera (a man with a camera: the only person
  among them), moon, coins, page, text, brick, grass, gravel, clock;
- scikit-learn's two sample photos (sklearn.datasets.load_sample_images): china, flower.

16 images in all; only one shows a person. So the density describes "photos found in packages", not the model's training
domain (selfies, video calls): its distances say how unlike these photos an upload is, no more.

    .venv/bin/python scripts/person_density_images.py build/person-density
    .venv/bin/python -m app fit-density --images build/person-density --model models/person --seed 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

COLOUR = ("rocket", "hubble_deep_field", "retina", "immunohistochemistry")
GREY = ("camera", "moon", "coins", "page", "text", "brick", "grass", "gravel", "clock")
EXAMPLES = ("astronaut", "chelsea", "coffee")


def density_images() -> dict[str, np.ndarray]:
    """Each fit image's name and ``(H, W, 3)`` uint8 RGB pixels."""
    images = {name: np.asarray(getattr(data, name)()) for name in COLOUR}
    images["motorcycle_left"] = np.asarray(data.stereo_motorcycle()[0])
    for name in GREY:
        grey = np.asarray(getattr(data, name)())
        images[name] = np.repeat(grey[..., None], 3, axis=2)
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    for file, image in zip(sample.filenames, sample.images, strict=True):
        images[f"sklearn_{Path(file).stem}"] = np.asarray(image)
    assert not set(images) & set(EXAMPLES), "the page's examples stay out of the fit"
    return {name: image[..., :3].astype(np.uint8) for name, image in images.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the PNGs into")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    images = density_images()
    for name, rgb in images.items():
        Image.fromarray(rgb, "RGB").save(args.out / f"{name}.png")
    print(f"{len(images)} images in {args.out}")


if __name__ == "__main__":
    main()
