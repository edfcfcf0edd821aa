"""``calibrate``: fit the temperature on a labelled folder and store it in the bundle."""

from __future__ import annotations

import argparse
import sys

from app.cli.common import add_data_args, error

NAME = "calibrate"
HELP = "fit the temperature on labelled images and store it in the bundle"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    add_data_args(p)


def run(args: argparse.Namespace) -> int:
    """Fit, write ``model.json`` and report ECE before and after; exit 2 on unusable data."""
    from app.cli.common import load_analyzer, progress_bar
    from app.io.bundle import CARD_FILE, BundleError
    from app.io.masks import DatasetError, pair_files
    from app.workflows.calibrate import calibrate_bundle

    try:
        pairs = pair_files(args.images, args.masks)
        analyzer = load_analyzer(args.model, args.device)
        fit = calibrate_bundle(
            analyzer,
            pairs,
            images=args.images,
            masks=args.masks,
            ignore_index=args.ignore_index,
            seed=args.seed,
            progress=progress_bar("calibrate", args.quiet),
        )
    except (BundleError, DatasetError, ValueError) as exc:
        error(exc)
        return 2
    print(
        f"temperature {fit.temperature:.4f}: ECE {fit.ece_before:.4f} -> {fit.ece_after:.4f} on {fit.pixels} pixels; wrote {analyzer.bundle.path / CARD_FILE}",
        file=sys.stderr,
    )
    return 0
