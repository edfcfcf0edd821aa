"""How far can each map be trusted, on our own synthetic data? Builds the README table.

Generates the synthetic val/test/shifted/ood splits, fits the temperature on
val (writing it into the bundle unless ``--no-write``), evaluates every split
with MC dropout and prints a Markdown table: ECE of the raw softmax, of the
temperature-scaled softmax and of the MC mean; error-detection AUROC and AURC of
each map; OOD AUROC of each map.

Usage: python scripts/trust_table.py [--model default] [--count 200] [--size 128] [--samples 20] [--out runs/trust]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from app.defaults import IGNORE_INDEX
from app.engine.device import resolve_device
from app.io.bundle import load_bundle, resolve_bundle_dir
from app.io.masks import pair_files
from app.io.synthetic import write_split
from app.maps.registry import DETECTION_MAPS
from app.metrics.scoring import EvaluationResult
from app.workflows.analyzer import Analyzer
from app.workflows.calibrate import calibrate_bundle
from app.workflows.evaluate_folder import evaluate_pairs, write_evaluation

SPLITS = ("test", "shifted", "ood")


def _fmt(v: object) -> str:
    return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def table(results: dict[str, EvaluationResult]) -> str:
    """Markdown tables from per-split evaluations."""
    lines = [
        "| split | mIoU | ECE softmax | ECE softmax, τ-scaled | ECE MC mean | NLL softmax | NLL τ-scaled |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, m in results.items():
        cal = m.calibration
        scaled = cal.get("softmax_scaled")
        lines.append(
            f"| {split} | {_fmt(m.segmentation.miou)} | {_fmt(cal['softmax'].ece)} | {_fmt(scaled.ece if scaled else None)} | "
            f"{_fmt(cal['mc_mean'].ece)} | {_fmt(cal['softmax'].nll)} | {_fmt(scaled.nll if scaled else None)} |"
        )
    lines += ["", "| split | map | error AUROC ↑ | AURC ↓ | OOD AUROC ↑ |", "|---|---|---|---|---|"]
    for split, m in results.items():
        ood = m.ood_detection or {}
        for name in DETECTION_MAPS:
            err = m.error_detection[name]
            lines.append(f"| {split} | {name} | {_fmt(err.auroc)} | {_fmt(err.aurc)} | {_fmt(ood[name].auroc if name in ood else None)} |")
    return "\n".join(lines)


def main() -> int:
    """Generate, calibrate, evaluate, print."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="data set seed (the default model was trained on seed 0's train split)")
    p.add_argument("--out", type=Path, default=Path("runs/trust"))
    p.add_argument("--no-write", action="store_true", help="fit on a copy; leave the bundle's temperature as it is")
    args = p.parse_args()
    data = args.out / "data"
    for split in ("val", *SPLITS):
        if not (data / split / "images").exists():
            write_split(split, args.count, data / split, size=args.size, seed=args.seed)
    model = args.model
    if args.no_write:
        shutil.copytree(resolve_bundle_dir(model), args.out / "model", dirs_exist_ok=True)
        model = str(args.out / "model")
    device = resolve_device("auto")
    analyzer = Analyzer(load_bundle(model, device), device)
    val = data / "val"
    fit = calibrate_bundle(analyzer, pair_files(val / "images", val / "masks"), images=val / "images", masks=val / "masks", ignore_index=IGNORE_INDEX)
    print(f"temperature {fit.temperature:.4f}: ECE {fit.ece_before:.4f} -> {fit.ece_after:.4f}", file=sys.stderr)
    results = {}
    for split in SPLITS:
        pairs = pair_files(data / split / "images", data / split / "masks")
        ood_label = IGNORE_INDEX if split == "ood" else None
        evaluation = evaluate_pairs(analyzer, pairs, ignore_index=IGNORE_INDEX, ood_label=ood_label, samples=args.samples)
        write_evaluation(evaluation, args.out / split)
        results[split] = evaluation.metrics
    text = table(results)
    (args.out / "table.md").write_text(text + "\n")
    print(text, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
