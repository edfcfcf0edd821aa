"""How far can each map be trusted, on our own synthetic data? Builds the README table, with its spread over run seeds.

Generates the synthetic val/test/shifted/ood splits, fits the temperature on val, evaluates every split with MC
dropout once per run seed (each image's masks seeded by the run seed and its file name, so the MC error averages over
the images) and prints Markdown tables: ECE of the raw softmax, of the temperature-scaled softmax and of the MC mean;
error-detection AUROC and AURC of each map; OOD AUROC of each map; and the OOD AUROC gap of mutual information over
softmax confidence. A cell that varies with the run seed reads ``mean ± sd (min–max)`` over the seeds.

The shipped bundle is left alone: the temperature and image reference are fitted into a copy under ``--out`` unless
``--write`` asks to write them into the bundle itself.

Usage: python scripts/trust_table.py [--model default] [--count 200] [--size 128] [--samples 20] [--seeds 0 1 2 3 4]
       [--data-seed 0] [--out runs/trust] [--write]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from app.defaults import DEFAULT_SAMPLES, IGNORE_INDEX
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
Runs = dict[int, dict[str, EvaluationResult]]


def cell(values: Sequence[float | None], digits: int = 3) -> str:
    """Over run seeds: ``mean ± sd (min–max)``, the mean alone when all agree to ``digits``, ``–`` when undefined."""
    present = [v for v in values if v is not None]
    if not present or len(present) < len(values):
        return "–"
    mean = statistics.fmean(present)
    if len(present) == 1 or round(max(present), digits) == round(min(present), digits):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(present):.{digits}f} ({min(present):.{digits}f}–{max(present):.{digits}f})"


def _column(runs: Runs, split: str, pick: Callable[[EvaluationResult], float | None], digits: int = 3) -> str:
    return cell([pick(by_split[split]) for by_split in runs.values()], digits)


def _cal(key: str, metric: str) -> Callable[[EvaluationResult], float | None]:
    return lambda m: getattr(m.calibration[key], metric) if key in m.calibration else None


def _err(name: str, metric: str) -> Callable[[EvaluationResult], float | None]:
    return lambda m: getattr(m.error_detection[name], metric) if name in m.error_detection else None


def _ood(name: str) -> Callable[[EvaluationResult], float | None]:
    return lambda m: m.ood_detection[name].auroc if m.ood_detection and name in m.ood_detection else None


def _gap(m: EvaluationResult) -> float | None:
    mi, conf = _ood("mutual_information")(m), _ood("confidence")(m)
    return None if mi is None or conf is None else mi - conf


def table(runs: Runs) -> str:
    """Markdown tables from per-seed, per-split evaluations."""
    seeds = ", ".join(str(s) for s in runs)
    lines = [
        f"Run seeds {seeds}: cells that vary read mean ± sd (min–max) over the seeds.",
        "",
        "| split | mIoU | ECE softmax | ECE softmax, τ-scaled | ECE MC mean | NLL softmax | NLL τ-scaled |",
        "|---|---|---|---|---|---|---|",
    ]
    splits = list(next(iter(runs.values())))
    columns = [_cal("softmax", "ece"), _cal("softmax_scaled", "ece"), _cal("mc_mean", "ece"), _cal("softmax", "nll"), _cal("softmax_scaled", "nll")]
    for split in splits:
        row = [_column(runs, split, lambda m: m.segmentation.miou), *(_column(runs, split, pick) for pick in columns)]
        lines.append(f"| {split} | " + " | ".join(row) + " |")
    lines += ["", "| split | map | error AUROC ↑ | AURC ↓ | OOD AUROC ↑ |", "|---|---|---|---|---|"]
    for split in splits:
        for name in DETECTION_MAPS:
            if all(name not in by_split[split].error_detection for by_split in runs.values()):
                continue  # a map the bundle cannot compute (the feature distance without a fitted density)
            cells = [_column(runs, split, _err(name, "auroc")), _column(runs, split, _err(name, "aurc"), 5), _column(runs, split, _ood(name))]
            lines.append(f"| {split} | {name} | " + " | ".join(cells) + " |")
    gaps = {split: _column(runs, split, _gap) for split in splits}
    if any(v != "–" for v in gaps.values()):
        lines += ["", "| split | OOD AUROC gap, mutual information − confidence |", "|---|---|"]
        lines += [f"| {split} | {v} |" for split, v in gaps.items() if v != "–"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Generate, calibrate, evaluate once per run seed, print."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="run seeds of the dropout masks (default 0 to 4)")
    p.add_argument("--data-seed", type=int, default=0, help="data set seed (the default model was trained on seed 0's train split)")
    p.add_argument("--out", type=Path, default=Path("runs/trust"))
    p.add_argument("--write", action="store_true", help="write the fitted temperature and image reference into the bundle itself")
    args = p.parse_args(argv)
    data = args.out / "data"
    for split in ("val", *SPLITS):
        if not (data / split / "images").exists():
            write_split(split, args.count, data / split, size=args.size, seed=args.data_seed)
    model = args.model
    if not args.write:
        shutil.copytree(resolve_bundle_dir(model), args.out / "model", dirs_exist_ok=True)
        model = str(args.out / "model")
    device = resolve_device("auto")
    analyzer = Analyzer(load_bundle(model, device), device)
    val = data / "val"
    val_pairs = pair_files(val / "images", val / "masks")
    fit = calibrate_bundle(analyzer, val_pairs, images=val / "images", masks=val / "masks", ignore_index=IGNORE_INDEX, seed=args.seeds[0], samples=args.samples)
    print(f"temperature {fit.temperature:.4f}: ECE {fit.ece_before:.4f} -> {fit.ece_after:.4f} (written to {model})", file=sys.stderr)
    runs: Runs = {}
    for seed in args.seeds:
        runs[seed] = {}
        for split in SPLITS:
            pairs = pair_files(data / split / "images", data / split / "masks")
            ood_label = IGNORE_INDEX if split == "ood" else None
            evaluation = evaluate_pairs(analyzer, pairs, ignore_index=IGNORE_INDEX, ood_label=ood_label, samples=args.samples, seed=seed)
            write_evaluation(evaluation, args.out / f"seed-{seed}" / split)
            runs[seed][split] = evaluation.metrics
    text = table(runs)
    (args.out / "table.md").write_text(text + "\n")
    print(text, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
