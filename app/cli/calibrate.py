"""``calibrate``: fit the temperature and the image-level OOD reference on a labelled folder and store them in the bundle."""

from __future__ import annotations

import argparse
import sys

from app.cli.common import SAMPLES_DEFAULT_HELP, add_data_args, error, samples_for

NAME = "calibrate"
HELP = "fit the temperature and the image-level OOD reference on labelled images and store them in the bundle"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    add_data_args(p)
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help=f"MC samples per image for the OOD reference (keep the analyses' default, so they compare; {SAMPLES_DEFAULT_HELP})",
    )


def run(args: argparse.Namespace) -> int:
    """Fit, write ``model.json`` and report ECE before and after and the reference; exit 2 on unusable data."""
    from app.cli.common import load_analyzer, progress_bar
    from app.io.bundle import CARD_FILE, BundleError
    from app.io.masks import DatasetError, pair_files
    from app.workflows.calibrate import calibrate_bundle

    if args.samples is not None and args.samples < 0:
        error("--samples must be >= 0")
        return 2
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
            samples=samples_for(args.samples, analyzer.bundle.card),
            progress=progress_bar("calibrate", args.quiet),
        )
    except (BundleError, DatasetError, ValueError) as exc:
        error(exc)
        return 2
    reference = fit.image_reference
    print(
        f"temperature {fit.temperature:.4f}: ECE {fit.ece_before:.4f} -> {fit.ece_after:.4f} on {fit.pixels} pixels; "
        f"image-level OOD reference: {', '.join(reference.means)} on {reference.images} images, {reference.samples} samples; "
        f"wrote {analyzer.bundle.path / CARD_FILE}",
        file=sys.stderr,
    )
    return 0
