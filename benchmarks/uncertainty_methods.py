"""What each source of uncertainty costs, and what it buys: MC dropout, test-time augmentation, a deep ensemble and
their combinations, side by side in one run.

Cost: one 512×512 synthetic scene analysed at full resolution through the one analysis path
(:meth:`~app.workflows.analyzer.Analyzer.analyze_image`, region table included), every method once per round in
the same order, for ``--rounds`` rounds after a warm-up; printed: the median seconds of each and the median over
rounds of its ratio to the deterministic pass of the same round.

Quality (``--quality N``): the same methods on ``N`` synthetic test scenes (mIoU, ECE and NLL of the pooled
probabilities, error-detection AUROC of entropy and mutual information) and ``N`` OOD scenes (OOD AUROC of entropy and
mutual information), 128×128, each image's masks seeded by ``image_seed(seed, "<split>-<index>")``.

One thread by default: on this shared 2-core machine two threads made the small operations of a multi-pass
analysis erratically slow (a 128² flips analysis took 0.26 s in one run and 7 s in the next, while other processes
held a core), which says more about the neighbours than about the method.

Usage: python benchmarks/uncertainty_methods.py [--size 512] [--rounds 5] [--samples 20] [--threads 1]
       [--ensemble ensemble] [--quality 100]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch

from app.defaults import IGNORE_INDEX
from app.engine.dropout_masks import image_seed
from app.io.bundle import load_bundle
from app.io.synthetic import iter_split, make_scene
from app.metrics.scoring import Evaluator
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer


@dataclass(frozen=True)
class Method:
    """One row: the model (single or ensemble), the augmentation and the MC samples per pass."""

    label: str
    ensemble: bool
    tta: str
    samples: int


def methods(samples: int) -> list[Method]:
    """The methods compared, the deterministic pass first."""
    return [
        Method("deterministic pass", False, "none", 0),
        Method(f"MC dropout (T={samples})", False, "none", samples),
        Method("TTA flips (T=0)", False, "flips", 0),
        Method(f"TTA flips × MC (T={samples})", False, "flips", samples),
        Method("TTA flips+scales (T=0)", False, "flips+scales", 0),
        Method("TTA photometric (T=0)", False, "photometric", 0),
        Method("ensemble(3) (T=0)", True, "none", 0),
        Method(f"ensemble(3) × MC (T={samples})", True, "none", samples),
        Method(f"ensemble(3) × flips × MC (T={samples})", True, "flips", samples),
    ]


def cost(analyzers: dict[bool, Analyzer], rows: list[Method], size: int, rounds: int) -> None:
    """Print the cost table."""
    rgb = make_scene("test", 0, size=size, seed=0).image
    for m in rows:
        analyzers[m.ensemble].analyze_image(rgb, AnalysisRequest(samples=m.samples, tta=m.tta, resolution="full"))
    seconds: dict[str, list[float]] = {m.label: [] for m in rows}
    ratios: dict[str, list[float]] = {m.label: [] for m in rows}
    method_names: dict[str, tuple[str, int]] = {}
    for _ in range(rounds):
        base = 0.0
        for m in rows:
            start = time.perf_counter()
            analysis = analyzers[m.ensemble].analyze_image(rgb, AnalysisRequest(samples=m.samples, tta=m.tta, resolution="full"))
            took = time.perf_counter() - start
            base = took if m is rows[0] else base
            seconds[m.label].append(took)
            ratios[m.label].append(took / base)
            method_names[m.label] = (analysis.method, analysis.passes)
    print(f"\nCost at {size}×{size} (full resolution, {rounds} rounds, {torch.get_num_threads()} threads)\n")
    print("| method | reported as | passes | seconds per image | × one deterministic pass |")
    print("|---|---|---|---|---|")
    for m in rows:
        name, passes = method_names[m.label]
        print(f"| {m.label} | `{name}` | {passes} | {statistics.median(seconds[m.label]):.2f} | {statistics.median(ratios[m.label]):.1f} |")


def quality(analyzers: dict[bool, Analyzer], rows: list[Method], count: int, seed: int) -> None:
    """Print the quality table."""
    print(f"\nQuality on {count} synthetic test and {count} OOD scenes (128×128; run seed {seed})\n")
    print("| method | test mIoU | ECE | NLL | error AUROC entropy | error AUROC MI | OOD AUROC entropy | OOD AUROC MI |")
    print("|---|---|---|---|---|---|---|---|")
    for m in rows:
        analyzer = analyzers[m.ensemble]
        classes = len(analyzer.bundle.card.classes)
        test, ood = Evaluator(classes, IGNORE_INDEX), Evaluator(classes, None, 255)
        for evaluator, split in ((test, "test"), (ood, "ood")):
            for index, scene in enumerate(iter_split(split, count)):
                analysis = analyzer.analyze_image(scene.image, AnalysisRequest(samples=m.samples, seed=image_seed(seed, f"{split}-{index}"), tta=m.tta))
                evaluator.add(analysis, scene.mask)
        t, o = test.result(analyzer.bundle.class_names), ood.result(analyzer.bundle.class_names)
        mc = t.calibration["mc_mean"]
        assert o.ood_detection is not None

        def auroc(value: float | None) -> str:
            return "–" if value is None else f"{value:.3f}"

        print(
            f"| {m.label} | {t.segmentation.miou:.3f} | {mc.ece:.4f} | {mc.nll:.4f} | {auroc(t.error_detection['entropy'].auroc)} | "
            f"{auroc(t.error_detection['mutual_information'].auroc)} | {auroc(o.ood_detection['entropy'].auroc)} | "
            f"{auroc(o.ood_detection['mutual_information'].auroc)} |"
        )


def main() -> int:
    """Both tables."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steady figures on a shared CPU, see the module docstring)")
    p.add_argument("--model", default="default")
    p.add_argument("--ensemble", default="ensemble")
    p.add_argument("--quality", type=int, default=0, help="scenes per split for the quality table (0: none)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    analyzers = {False: Analyzer(load_bundle(args.model)), True: Analyzer(load_bundle(args.ensemble))}
    rows = methods(args.samples)
    if args.rounds:
        cost(analyzers, rows, args.size, args.rounds)
    if args.quality:
        quality(analyzers, rows, args.quality, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
