"""``evaluate``: quality, calibration, error and OOD detection on a labelled folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli.common import SAMPLES_DEFAULT_HELP, add_data_args, add_tta_arg, error, samples_for, tta_for
from app.request import AnalysisRequest

NAME = "evaluate"
HELP = "quality, calibration, error and OOD detection on labelled images"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    add_data_args(p)
    p.add_argument("--samples", type=int, default=None, help=f"MC dropout samples T ({SAMPLES_DEFAULT_HELP})")
    p.add_argument("--ood-label", type=int, default=None, help="mask value marking out-of-distribution pixels (e.g. 255)")
    add_tta_arg(p)
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.json, report.md and reliability.png")


def run(args: argparse.Namespace) -> int:
    """Write ``metrics.json``, ``report.md`` and ``reliability.png``, print the report; exit 2 on unusable data."""
    from app.cli.common import load_analyzer, progress_bar
    from app.io.bundle import BundleError
    from app.io.masks import DatasetError, pair_files
    from app.workflows.evaluate_folder import evaluate_pairs, write_evaluation

    try:
        pairs = pair_files(args.images, args.masks)
        analyzer = load_analyzer(args.model, args.device)
        evaluation = evaluate_pairs(
            analyzer,
            pairs,
            AnalysisRequest(samples=samples_for(args.samples, analyzer.bundle.card), seed=args.seed, tta=tta_for(args.tta, analyzer.bundle.card)),
            ignore_index=args.ignore_index,
            ood_label=args.ood_label,
            progress=progress_bar("evaluate", args.quiet),
        )
    except (BundleError, DatasetError, ValueError) as exc:
        error(exc)
        return 2
    print(write_evaluation(evaluation, args.out))
    return 0
