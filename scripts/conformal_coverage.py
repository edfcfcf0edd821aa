"""Coverage of the card's conformal prediction sets and class masks on fresh synthetic scenes, per split and level.

Analyses ``--count`` scenes of each split (``test``: in distribution, disjoint from the calibration; ``shifted``: noise,
blur, contrast and colour change; ``ood``: with object kinds never seen, whose pixels are not scored) the way a user's
upload is (``--samples`` MC samples, seed 0), and reports per calibrated level: the mean over images of the share of
scored pixels whose true class is outside their set (the quantity the card bounds by alpha, with its standard error over
images), the mean set size, the share of one-class and of empty sets, and for ``ood`` the share of the unseen objects'
pixels whose set is not one class (flagged at that level). Then each class mask's false-negative rate at alpha = 0.1
over the images showing the class, and the cost of the sets against the analysis.

Usage: python scripts/conformal_coverage.py [--count 200] [--samples 20] [--model default]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from app.defaults import IGNORE_INDEX
from app.io.bundle import load_bundle
from app.io.synthetic import iter_split
from app.metrics.risk_control import set_sizes
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

SPLITS = ("test", "shifted", "ood")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = load_bundle(args.model)
    sets = bundle.card.conformal_sets
    if sets is None:
        raise SystemExit("the card has no conformal_sets: run seg-uncertainty calibrate first")
    analyzer = Analyzer(bundle)
    request = AnalysisRequest(samples=args.samples, seed=0)
    classes = len(bundle.card.classes)
    print(f"model {bundle.card.name}: sets calibrated on {sets.images} images ({sets.calibrated_on}); {args.count} scenes per split, T = {args.samples}")
    print(f"{'split':>8} {'alpha':>6} {'t':>7} {'miscoverage':>16} {'mean size':>10} {'one class':>10} {'empty':>7} {'unseen flagged':>15}")
    analysis_seconds, set_seconds = 0.0, 0.0
    masks_at = [m for m in sets.class_masks if m.alpha == 0.1]
    fnr: dict[str, dict[str, list[float]]] = {split: {m.class_name: [] for m in masks_at} for split in SPLITS}
    for split in SPLITS:
        rows: dict[float, list[tuple[float, float, float, float, float]]] = {level.alpha: [] for level in sets.levels}
        for scene in iter_split(split, args.count):
            started = time.perf_counter()
            analysis = analyzer.analyze_image(scene.image, request)
            analysis_seconds += time.perf_counter() - started
            probs = analysis.mean_probs
            mask = scene.mask
            scored = mask < classes
            unseen = mask == IGNORE_INDEX
            p_true = np.take_along_axis(probs, np.minimum(mask, classes - 1)[None].astype(np.int64), axis=0)[0]
            for level in sets.levels:
                started = time.perf_counter()
                sizes = set_sizes(torch.from_numpy(probs[None]), level.threshold)[0].numpy()
                set_seconds += time.perf_counter() - started
                miss = float(((p_true < level.threshold) & scored).sum() / max(scored.sum(), 1))
                flagged = float((sizes[unseen] != 1).mean()) if unseen.any() else float("nan")
                rows[level.alpha].append((miss, float(sizes.mean()), float((sizes == 1).mean()), float((sizes == 0).mean()), flagged))
            for m in masks_at:
                c = bundle.card.classes.index(next(k for k in bundle.card.classes if k.name == m.class_name))
                truth = mask == c
                if truth.any():
                    fnr[split][m.class_name].append(float((probs[c][truth] < m.threshold).mean()))
        for level in sets.levels:
            values = np.array(rows[level.alpha])
            miss = values[:, 0]
            flagged = np.nanmean(values[:, 4]) if split == "ood" else float("nan")
            print(
                f"{split:>8} {level.alpha:6.2f} {level.threshold:7.4f} {miss.mean():9.4f} ± {miss.std(ddof=1) / np.sqrt(len(miss)):.4f}"
                f" {values[:, 1].mean():10.3f} {values[:, 2].mean():10.3f} {values[:, 3].mean():7.3f} {flagged:15.3f}"
            )
    print("class masks at alpha = 0.1: mean false-negative rate over the images showing the class (images)")
    for m in masks_at:
        cells = "  ".join(f"{split} {np.mean(fnr[split][m.class_name]):.4f} ({len(fnr[split][m.class_name])})" for split in SPLITS)
        print(f"  {m.class_name:>10} t = {m.threshold:.4f}: {cells}")
    per_image = analysis_seconds / (len(SPLITS) * args.count)
    per_set = set_seconds / (len(SPLITS) * args.count * len(sets.levels))
    print(f"cost: analysis {1000 * per_image:.1f} ms an image, one level's set sizes {1000 * per_set:.3f} ms ({per_set / per_image:.2%} of it)")


if __name__ == "__main__":
    main()
