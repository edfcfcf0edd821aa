"""``fit-density``: fit the feature density (feature-space distance map) on in-distribution images and store it in the bundle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.common import add_model_args, error
from app.defaults import DEFAULT_SEED
from app.plural import plural

NAME = "fit-density"
HELP = "fit the feature-space density (class-conditional Gaussian of the decoder features) on in-distribution images and store it in the bundle"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("--images", type=Path, required=True, help="folder of in-distribution images (a validation split; no masks needed)")
    add_model_args(p)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the pixel subsample the quantiles are taken from")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Fit, write ``density.safetensors`` and ``model.json``, report what was fitted; exit 2 on unusable data or models."""
    from app.cli.common import load_analyzer, progress_bar
    from app.io.bundle import CARD_FILE, BundleError
    from app.io.density import DENSITY_FILE
    from app.io.masks import DatasetError
    from app.workflows.fit_density import fit_density, image_files

    command = f"seg-uncertainty fit-density --images {args.images} --model {args.model} --seed {args.seed}"
    try:
        images = image_files(args.images)
        analyzer = load_analyzer(args.model, args.device)
        fit = fit_density(analyzer, images, folder=args.images, seed=args.seed, command=command, progress=progress_bar("fit-density", args.quiet))
    except (BundleError, DatasetError, ValueError) as exc:
        error(exc)
        return 2
    folder = analyzer.bundle.path
    means = sorted(mean for mean, _ in fit.info.image_statistics)
    print(
        f"feature density: {plural(len(fit.info.classes), 'class mean')} ({', '.join(fit.info.classes)}) of {plural(fit.info.channels, 'channel')} "
        f"on {plural(fit.pixels, 'pixel')} "
        f"of {plural(len(images), 'image')}, quantiles from {plural(fit.quantile_pixels, 'pixel')}; image means of the map {means[0]:.3f}-{means[-1]:.3f}; "
        f"wrote {folder / DENSITY_FILE} and {folder / CARD_FILE}",
        file=sys.stderr,
    )
    return 0
