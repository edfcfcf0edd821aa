"""How far can each map be trusted, on our own synthetic data? Builds the README table, with its spread over run seeds.

Generates the synthetic val/test/shifted/ood splits, fits the temperature on val, evaluates every split with MC
dropout once per run seed (each image's masks seeded by the run seed and its file name, so the MC error averages over
the images) and prints Markdown tables: ECE of the raw softmax, of the temperature-scaled softmax and of the MC mean;
error-detection AUROC and AURC of each map; OOD AUROC of each map; and the OOD AUROC gap of mutual information over
softmax confidence. A cell that varies with the run seed reads ``mean ± sd (min–max)`` over the seeds.

The shipped bundle is left alone: the temperature and image reference are fitted into a copy under ``--out`` unless
``--write`` asks to write them into the bundle itself.

``--methods`` compares the sources of uncertainty instead (:mod:`app.workflows.compare_methods`): one deterministic
pass with the feature density, MC dropout, TTA flips, the ensemble (``--ensemble``) and their combinations, on the
test / shifted / OOD splits and the ``skimage.data`` photos (at the working size), with the first run seed: mIoU and ECE
of the mean prediction, error-detection AUROC/AURC, OOD-pixel AUROC, and the image-level AUROC of each map's image
mean (and of the feature distance's typicality score) for test against each other set. Writes ``methods.md`` and
``methods.json`` (every image's scores) under ``--out``.

Usage: python scripts/trust_table.py [--model default] [--count 200] [--size 128] [--samples 20] [--seeds 0 1 2 3 4]
       [--data-seed 0] [--out runs/trust] [--write]
       python scripts/trust_table.py --methods [--ensemble models/ensemble] [--photos astronaut coffee ...] [...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from app.defaults import DEFAULT_SAMPLES, IGNORE_INDEX
from app.engine.device import resolve_device
from app.io.bundle import load_bundle, resolve_bundle_dir
from app.io.masks import pair_files
from app.io.synthetic import write_split
from app.maps.registry import DETECTION_MAPS
from app.metrics.scoring import EvaluationResult
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.calibrate import calibrate_bundle
from app.workflows.compare_methods import MethodResult, run_method, standard_methods
from app.workflows.evaluate_folder import evaluate_pairs, write_evaluation
from app.workflows.methods_report import methods_json, methods_markdown

SPLITS = ("test", "shifted", "ood")
ENSEMBLE = Path(__file__).resolve().parents[1] / "models" / "ensemble"
# skimage.data photos that ship inside the package (no download), as in scripts/image_ood_table.py (stereo_motorcycle:
# both views).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "immunohistochemistry", "stereo_motorcycle")
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


def skimage_photos(names: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """``(name, (H, W, 3) uint8)`` of the named ``skimage.data`` images (greyscale repeated into RGB, stereo pairs split)."""
    import skimage.data

    out = []
    for name in names:
        loaded = getattr(skimage.data, name)()
        images = list(loaded[:2]) if isinstance(loaded, tuple) else [loaded]
        for k, image in enumerate(images):
            rgb = np.asarray(image)
            rgb = np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb[..., :3]
            out.append((f"{name}[{k}]" if len(images) > 1 else name, np.ascontiguousarray(rgb, dtype=np.uint8)))
    return out


def compare(args: argparse.Namespace, data: Path) -> int:
    """``--methods``: every source of uncertainty on the same scenes and photos; writes methods.md and methods.json."""
    device = resolve_device("auto")
    splits = {split: pair_files(data / split / "images", data / split / "masks") for split in SPLITS}
    photos = {"real photos": skimage_photos(args.photos)}
    analyzers: dict[str, Analyzer] = {}
    results: list[MethodResult] = []
    for method in standard_methods(args.samples, str(args.ensemble), args.model):
        if method.model not in analyzers:
            analyzers[method.model] = Analyzer(load_bundle(method.model, device), device)
        results.append(run_method(analyzers[method.model], method, splits, photos, seed=args.seeds[0]))
        print(f"{method.label} ({results[-1].reported}): {results[-1].seconds_per_image:.3f} s per scene", file=sys.stderr)
    text = methods_markdown(results, SPLITS, ("shifted", "ood", "real photos"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "methods.md").write_text(text + "\n")
    (args.out / "methods.json").write_text(json.dumps(methods_json(results), indent=1) + "\n")
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Generate, calibrate, evaluate once per run seed, print (or, with ``--methods``, compare the methods)."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="run seeds of the dropout masks (default 0 to 4)")
    p.add_argument("--data-seed", type=int, default=0, help="data set seed (the default model was trained on seed 0's train split)")
    p.add_argument("--out", type=Path, default=Path("runs/trust"))
    p.add_argument("--write", action="store_true", help="write the fitted temperature and image reference into the bundle itself")
    p.add_argument("--methods", action="store_true", help="compare MC dropout, TTA, the ensemble, the feature density and combinations instead")
    p.add_argument("--ensemble", type=Path, default=ENSEMBLE, help="with --methods: the ensemble bundle (default models/ensemble)")
    p.add_argument("--photos", nargs="+", default=list(PHOTOS), help="with --methods: skimage.data photo names (default: the 8 RGB ones)")
    args = p.parse_args(argv)
    data = args.out / "data"
    if args.methods:
        for split in SPLITS:
            if not (data / split / "images").exists():
                write_split(split, args.count, data / split, size=args.size, seed=args.data_seed)
        return compare(args, data)
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
            evaluation = evaluate_pairs(analyzer, pairs, AnalysisRequest(samples=args.samples, seed=seed), ignore_index=IGNORE_INDEX, ood_label=ood_label)
            write_evaluation(evaluation, args.out / f"seed-{seed}" / split)
            runs[seed][split] = evaluation.metrics
    text = table(runs)
    (args.out / "table.md").write_text(text + "\n")
    print(text, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
