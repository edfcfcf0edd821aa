"""Which source of uncertainty can be trusted where? MC dropout, TTA, the ensemble and their combinations, side by side.

For each method (a bundle, a test-time augmentation and a sample count) on the synthetic test / shifted / OOD scenes:
ECE of the mean prediction (``mc_mean``: the pooled probabilities), pixel-level error-detection AUROC and AURC and
OOD-pixel AUROC of every detection map (exact, tie-aware; ``app.metrics``); and, at image level, the AUROC of each
map's image mean for telling test scenes from shifted scenes, from OOD scenes and from real photos (the ``skimage.data``
photos, resized to the working size). Every image's masks are seeded by the run seed and its name. Prints Markdown.

Usage: python scripts/methods_table.py [--count 60] [--size 128] [--samples 20] [--seed 0] [--ensemble models/ensemble]
       [--out runs/methods]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from app.defaults import IGNORE_INDEX
from app.engine.device import resolve_device
from app.engine.dropout_masks import image_seed
from app.io.bundle import load_bundle
from app.io.masks import pair_files
from app.io.resize import resize_rgb, working_shape
from app.io.synthetic import write_split
from app.maps.registry import DETECTION_MAPS, get_map
from app.metrics.scoring import EvaluationResult
from app.workflows.analyzer import Analyzer
from app.workflows.evaluate_folder import evaluate_pairs

SPLITS = ("test", "shifted", "ood")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "cat")


@dataclass(frozen=True)
class Method:
    """One way of being uncertain."""

    label: str
    model: str
    tta: str
    samples: int


def methods(samples: int, ensemble: str) -> list[Method]:
    """MC dropout, TTA, the ensemble and their combinations."""
    return [
        Method("MC dropout", "default", "none", samples),
        Method("TTA flips", "default", "flips", 0),
        Method("TTA flips × MC", "default", "flips", samples),
        Method("ensemble", ensemble, "none", 0),
        Method("ensemble × MC", ensemble, "none", samples),
    ]


def photos(names: Iterable[str]) -> list[tuple[str, np.ndarray]]:
    """The named ``skimage.data`` photos as RGB (grey repeated)."""
    import skimage.data

    out = []
    for name in names:
        rgb = np.asarray(getattr(skimage.data, name)())
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        out.append((name, np.ascontiguousarray(rgb[..., :3].astype(np.uint8))))
    return out


def image_means(analyzer: Analyzer, images: Sequence[tuple[str, np.ndarray]], method: Method, seed: int) -> dict[str, list[float]]:
    """Each detection map's image mean per image, at the working size."""
    working = analyzer.bundle.card.input.working_size
    means: dict[str, list[float]] = {m: [] for m in DETECTION_MAPS}
    for name, rgb in images:
        small = resize_rgb(rgb, working_shape(rgb.shape[0], rgb.shape[1], working))
        analysis = analyzer.analyze_image(small, samples=method.samples, seed=image_seed(seed, name), tta=method.tta)
        for m in DETECTION_MAPS:
            means[m].append(float(analysis.maps[m].mean(dtype=np.float64)))
    return means


def image_auroc(inside: dict[str, list[float]], outside: dict[str, list[float]], name: str) -> float:
    """AUROC of map ``name``'s image mean for telling ``outside`` images from ``inside`` ones (more uncertain = positive)."""
    sign = -1.0 if get_map(name).uncertain_when == "low" else 1.0
    scores = sign * np.array(inside[name] + outside[name])
    labels = np.r_[np.zeros(len(inside[name])), np.ones(len(outside[name]))]
    return float(roc_auc_score(labels, scores))


def _scene_images(folder: Path) -> list[tuple[str, np.ndarray]]:
    return [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in sorted((folder / "images").iterdir())]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the splits, evaluate and analyse every method, print the tables."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--count", type=int, default=60)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--ensemble", default="models/ensemble")
    p.add_argument("--out", type=Path, default=Path("runs/methods"))
    args = p.parse_args(argv)
    data = args.out / "data"
    for split in SPLITS:
        if not (data / split / "images").exists():
            write_split(split, args.count, data / split, size=args.size, seed=args.data_seed)
    device = resolve_device("auto")
    analyzers: dict[str, Analyzer] = {}
    pixel: dict[tuple[str, str], EvaluationResult] = {}
    image: dict[tuple[str, str], dict[str, list[float]]] = {}
    seconds: dict[str, float] = {}
    sets = {split: _scene_images(data / split) for split in SPLITS}
    sets["photos"] = photos(PHOTOS)
    for method in methods(args.samples, args.ensemble):
        analyzer = analyzers.setdefault(method.model, Analyzer(load_bundle(method.model, device), device))
        start = time.perf_counter()
        for split in SPLITS:
            pairs = pair_files(data / split / "images", data / split / "masks")
            ood_label = IGNORE_INDEX if split == "ood" else None
            pixel[method.label, split] = evaluate_pairs(
                analyzer, pairs, ignore_index=IGNORE_INDEX, ood_label=ood_label, samples=method.samples, seed=args.seed, tta=method.tta
            ).metrics
        for name, images in sets.items():
            image[method.label, name] = image_means(analyzer, images, method, args.seed)
        seconds[method.label] = time.perf_counter() - start
        print(f"{method.label}: {seconds[method.label]:.0f} s", file=sys.stderr)
    labels = [m.label for m in methods(args.samples, args.ensemble)]
    lines = ["| method | split | mIoU | ECE mean prediction |", "|---|---|---|---|"]
    for label in labels:
        for split in SPLITS:
            m = pixel[label, split]
            ece = m.calibration["mc_mean"].ece if "mc_mean" in m.calibration else None
            lines.append(f"| {label} | {split} | {_fmt(m.segmentation.miou)} | {_fmt(ece, 4)} |")
    lines += ["", "| method | map | error AUROC test ↑ | AURC test ↓ | error AUROC shifted ↑ | OOD-pixel AUROC ↑ |", "|---|---|---|---|---|---|"]
    for label in labels:
        for name in (n for n in DETECTION_MAPS if n in pixel[label, "test"].error_detection):
            test, shifted, ood = (pixel[label, s] for s in SPLITS)
            ood_auroc = ood.ood_detection[name].auroc if ood.ood_detection and name in ood.ood_detection else None
            errors = (test.error_detection[name], shifted.error_detection[name])
            cells = [_fmt(errors[0].auroc), _fmt(errors[0].aurc, 5), _fmt(errors[1].auroc), _fmt(ood_auroc)]
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "Image level: AUROC of each map's image mean, test scenes against …", ""]
    lines += ["| method | map | shifted | OOD | real photos |", "|---|---|---|---|---|"]
    for label in labels:
        for name in (n for n in DETECTION_MAPS if n in pixel[label, "test"].error_detection):
            cells = [_fmt(image_auroc(image[label, "test"], image[label, other], name)) for other in ("shifted", "ood", "photos")]
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
