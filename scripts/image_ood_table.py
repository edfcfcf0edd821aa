"""Can an image's mean uncertainty tell it is unlike the training data? Builds the README's image-level OOD table.

Analyses in-distribution test scenes, shifted scenes and OOD scenes (``app.io.synthetic``) and the photos that ship
with scikit-image (``skimage.data``, the "far OOD" set; grayscale ones made RGB, a second set) the way an upload is
analysed: at the model's working resolution, default samples and seed. Prints, per detection map, the image-level
AUROC of the image mean (oriented by the registry: low confidence = uncertain) for the test scenes against each other
set, and the share of each set that the analysis' image-level verdict flags as unusual (needs the card's
``image_reference``, written by ``seg-uncertainty calibrate``, and for the feature distance the bundle's density, written by
``seg-uncertainty fit-density``). The feature distance gets a second row: the AUROC of its verdict's score, the
percentile of the image's (mean, spread) typicality (:class:`app.metrics.image_ood.ImageTypicality`).

Usage: python scripts/image_ood_table.py [--model default] [--count 200] [--size 128] [--samples 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score

from app.defaults import DEFAULT_SAMPLES, DEFAULT_SEED
from app.engine.device import resolve_device
from app.io.bundle import load_bundle
from app.io.resize import resize_rgb, working_shape
from app.io.synthetic import iter_split
from app.maps.registry import DETECTION_MAPS, get_map
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

# skimage.data images that ship inside the package (no download); stereo_motorcycle gives a left and a right view.
RGB_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "immunohistochemistry", "stereo_motorcycle")
GRAY_PHOTOS = ("camera", "moon", "coins", "page", "text", "brick", "grass", "gravel", "clock")


@dataclass
class SetResult:
    """Image means and verdicts of one set of images."""

    names: list[str] = field(default_factory=list)
    means: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in DETECTION_MAPS})
    unusual: dict[str, list[bool]] = field(default_factory=lambda: {m: [] for m in DETECTION_MAPS})
    percentiles: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in DETECTION_MAPS})


def skimage_photos(names: Iterable[str]) -> Iterable[tuple[str, np.ndarray]]:
    """``(name, (H, W, 3) uint8)`` of the named ``skimage.data`` images (grayscale repeated into RGB)."""
    import skimage.data

    for name in names:
        loaded = getattr(skimage.data, name)()
        images = list(loaded) if isinstance(loaded, tuple) else [loaded]
        if name == "stereo_motorcycle":
            images = images[:2]
        for k, image in enumerate(images):
            rgb = np.asarray(image)
            if rgb.ndim == 2:
                rgb = np.repeat(rgb[..., None], 3, axis=2)
            yield (f"{name}[{k}]" if len(images) > 1 else name), np.ascontiguousarray(rgb[..., :3].astype(np.uint8))


def analyse(analyzer: Analyzer, images: Iterable[tuple[str, np.ndarray]], samples: int, seed: int) -> SetResult:
    """Analyse each image at the working resolution and keep its image means and verdicts."""
    working = analyzer.bundle.card.input.working_size
    result = SetResult()
    for name, rgb in images:
        small = resize_rgb(rgb, working_shape(rgb.shape[0], rgb.shape[1], working))
        analysis = analyzer.analyze_image(small, AnalysisRequest(samples=samples, seed=seed))
        verdicts = {v.map: v for v in analysis.image_ood}
        result.names.append(name)
        for m in DETECTION_MAPS:
            result.means[m].append(float(analysis.maps[m].mean(dtype=np.float64)))
            result.unusual[m].append(verdicts[m].unusual if m in verdicts else False)
            result.percentiles[m].append(verdicts[m].percentile if m in verdicts else 50.0)
    return result


def auroc(inside: SetResult, outside: SetResult, name: str) -> float:
    """AUROC of the image mean of map ``name`` for telling ``outside`` images from ``inside`` ones (uncertain = positive)."""
    sign = -1.0 if get_map(name).uncertain_when == "low" else 1.0
    scores = sign * np.array(inside.means[name] + outside.means[name])
    labels = np.r_[np.zeros(len(inside.names)), np.ones(len(outside.names))]
    return float(roc_auc_score(labels, scores))


def verdict_auroc(inside: SetResult, outside: SetResult, name: str) -> float:
    """AUROC of the verdict's percentile of map ``name`` (higher: more unusual than more validation images)."""
    scores = np.array(inside.percentiles[name] + outside.percentiles[name])
    labels = np.r_[np.zeros(len(inside.names)), np.ones(len(outside.names))]
    return float(roc_auc_score(labels, scores))


def table(sets: dict[str, SetResult], reference: str) -> str:
    """The Markdown tables: AUROC per map against the ``reference`` set, then the flagged shares."""
    others = [s for s in sets if s != reference]
    lines = [
        "| map | " + " | ".join(f"{reference} vs {s}" for s in others) + " |",
        "|---|" + "---|" * len(others),
    ]
    for m in DETECTION_MAPS:
        lines.append(f"| {m} | " + " | ".join(f"{auroc(sets[reference], sets[s], m):.3f}" for s in others) + " |")
        if m == "feature_distance":
            lines.append(f"| {m}, verdict score (mean and spread) | " + " | ".join(f"{verdict_auroc(sets[reference], sets[s], m):.3f}" for s in others) + " |")
    lines += ["", "| set | images | flagged unusual by any map | " + " | ".join(DETECTION_MAPS) + " |", "|---|---|---|" + "---|" * len(DETECTION_MAPS)]
    for s, r in sets.items():
        flags = np.array([r.unusual[m] for m in DETECTION_MAPS])
        shares = " | ".join(f"{100 * flags[i].mean():.0f} %" for i in range(len(DETECTION_MAPS)))
        lines.append(f"| {s} | {len(r.names)} | {100 * flags.any(axis=0).mean():.0f} % | {shares} |")
    return "\n".join(lines)


def main() -> int:
    """Analyse every set and print the tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--count", type=int, default=200, help="scenes per synthetic split")
    p.add_argument("--size", type=int, default=128, help="side of the synthetic scenes")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the dropout masks and of the synthetic data set")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = resolve_device(args.device)
    analyzer = Analyzer(load_bundle(args.model, device), device)
    analyzer.typicality_verdict = True  # off by default in the app (see Analyzer); measured here
    card = analyzer.bundle.card
    if card.image_reference is None:
        print("warning: the card has no image_reference; nothing will be flagged (run seg-uncertainty calibrate)", file=sys.stderr)

    def scenes(split: str) -> Iterable[tuple[str, np.ndarray]]:
        return ((f"{split}/{i}", s.image) for i, s in enumerate(iter_split(split, args.count, size=args.size, seed=args.seed)))

    sets = {split: analyse(analyzer, scenes(split), args.samples, args.seed) for split in ("test", "shifted", "ood")}
    sets["photos"] = analyse(analyzer, skimage_photos(RGB_PHOTOS), args.samples, args.seed)
    sets["grayscale photos"] = analyse(analyzer, skimage_photos(GRAY_PHOTOS), args.samples, args.seed)
    print(
        f"model {card.name}, working size {card.input.working_size}, T = {args.samples}, seed {args.seed}; "
        f"synthetic splits: {args.count} scenes of {args.size} px; reference: "
        f"{card.image_reference.split if card.image_reference else 'none'}",
        file=sys.stderr,
    )
    for s in ("photos", "grayscale photos"):
        print(f"{s} (skimage.data): {', '.join(sets[s].names)}", file=sys.stderr)
    print(table(sets, "test"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
