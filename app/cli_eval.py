"""The ``evaluate`` and ``calibrate`` commands."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from app.analysis import Analyzer, resolve_device
from app.bundle import CARD_FILE, BundleError, load_bundle, write_card
from app.calibration import CalibrationStats
from app.evaluation import DatasetError, Evaluator, pair_files, read_mask
from app.imaging import ImageDecodeError
from app.reports import markdown_report, reliability_png
from app.temperature import MAX_PIXELS, LogitPool, fit_temperature, nll_at


def add_data_args(p: argparse.ArgumentParser) -> None:
    """Arguments shared by ``evaluate`` and ``calibrate``."""
    p.add_argument("--images", type=Path, required=True, help="folder of images")
    p.add_argument("--masks", type=Path, required=True, help="folder of single-channel PNG masks (class indices), matched by file stem")
    p.add_argument("--ignore-index", type=int, default=255, help="mask value that is not scored")
    p.add_argument("--model", default="default", help="bundle name under models/ or a bundle folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _setup(args: argparse.Namespace) -> tuple[Analyzer, list[tuple[Path, Path]]]:
    pairs = pair_files(args.images, args.masks)
    device = resolve_device(args.device)
    return Analyzer(load_bundle(args.model, device), device), pairs


def _labelled(analyzer: Analyzer, image: Path, mask_path: Path, samples: int, seed: int) -> tuple[object, np.ndarray]:
    analysis = analyzer.analyze_bytes(image.read_bytes(), samples=samples, seed=seed)
    return analysis, read_mask(mask_path, (analysis.height, analysis.width))


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Write metrics.json, report.md and reliability.png for a labelled folder."""
    try:
        analyzer, pairs = _setup(args)
        card = analyzer.bundle.card
        evaluator = Evaluator(len(card.classes), args.ignore_index, args.ood_label, card.temperature if card.temperature != 1.0 else None)
        started = time.perf_counter()
        for image, mask_path in tqdm(pairs, desc="evaluate", unit="img", file=sys.stderr, disable=args.quiet):
            try:
                analysis, mask = _labelled(analyzer, image, mask_path, args.samples, args.seed)
            except ImageDecodeError as exc:
                raise DatasetError(f"{image.name}: {exc.message}") from exc
            evaluator.add(analysis, mask)  # type: ignore[arg-type]
    except (BundleError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metrics = evaluator.result(analyzer.bundle.class_names)
    metrics.update(model=card.name, samples=args.samples, seed=args.seed, temperature=card.temperature, seconds=round(time.perf_counter() - started, 2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (args.out / "report.md").write_text(markdown_report(metrics))
    (args.out / "reliability.png").write_bytes(reliability_png(metrics["calibration"]))  # type: ignore[arg-type]
    print(markdown_report(metrics))
    return 0


def _total_pixels(pairs: list[tuple[Path, Path]]) -> int:
    total = 0
    for image, _ in pairs:
        with Image.open(image) as img:
            total += img.size[0] * img.size[1]
    return total


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit the temperature on a labelled folder and write it into the bundle's model.json."""
    try:
        analyzer, pairs = _setup(args)
        card = analyzer.bundle.card
        pool = LogitPool(rate=min(1.0, MAX_PIXELS / max(_total_pixels(pairs), 1)), seed=args.seed)
        ignored = 0
        for image, mask_path in tqdm(pairs, desc="calibrate", unit="img", file=sys.stderr, disable=args.quiet):
            try:
                analysis, mask = _labelled(analyzer, image, mask_path, 0, args.seed)
            except ImageDecodeError as exc:
                raise DatasetError(f"{image.name}: {exc.message}") from exc
            y = torch.from_numpy(mask.reshape(-1))
            valid = (y >= 0) & (y < len(card.classes)) & (y != args.ignore_index)
            ignored += int((~valid).sum())
            pool.add(torch.from_numpy(analysis.probs.reshape(len(card.classes), -1)).T[valid], y[valid])  # type: ignore[attr-defined]
        log_probs, labels = pool.tensors()
        tau = fit_temperature(log_probs, labels)
    except (BundleError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    eces = []
    for t in (1.0, tau):
        stats = CalibrationStats()
        stats.update(torch.softmax(log_probs / t, dim=1), labels)
        eces.append(stats.result()["ece"])
    card.temperature = round(tau, 6)
    card.calibration = {
        "temperature": card.temperature,
        "method": "temperature scaling: golden-section search on log(tau) in [0.05, 20] minimising pixel NLL",
        "fitted_on": {
            "images": str(args.images),
            "masks": str(args.masks),
            "count": len(pairs),
            "pixels": int(labels.numel()),
            "ignored_pixels": ignored,
            "subsample_rate": pool.rate,
        },
        "ece_before": eces[0],
        "ece_after": eces[1],
        "nll_before": nll_at(log_probs, labels, 1.0),
        "nll_after": nll_at(log_probs, labels, tau),
        "ece_binning": "top-label, 15 equal-width bins",
    }
    write_card(card, analyzer.bundle.path)
    print(f"temperature {tau:.4f}: ECE {eces[0]:.4f} -> {eces[1]:.4f} on {labels.numel()} pixels; wrote {analyzer.bundle.path / CARD_FILE}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` and ``calibrate`` to the command line."""
    e = sub.add_parser("evaluate", help="quality, calibration, error and OOD detection on labelled images")
    add_data_args(e)
    e.add_argument("--samples", type=int, default=20)
    e.add_argument("--ood-label", type=int, default=None, help="mask value marking out-of-distribution pixels (e.g. 255)")
    e.add_argument("--out", type=Path, required=True)
    e.set_defaults(func=cmd_evaluate)
    c = sub.add_parser("calibrate", help="fit the temperature on labelled images and store it in the bundle")
    add_data_args(c)
    c.set_defaults(func=cmd_calibrate)
