"""``calibrate``: fit the temperature, the image-level OOD reference and the image test on a labelled folder and store them in the bundle."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from app.cli.common import SAMPLES_DEFAULT_HELP, add_data_args, error, samples_for
from app.defaults import TTA_MODES
from app.plural import plural

NAME = "calibrate"
HELP = "fit the temperature, the image-level OOD reference and the image test on labelled images and store them in the bundle"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    add_data_args(p)
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help=f"MC samples per image for the OOD reference (keep the analyses' default, so they compare; {SAMPLES_DEFAULT_HELP})",
    )
    p.add_argument("--split", default=None, help="what the --images are, in words, for the card (default: the folder)")
    p.add_argument(
        "--conformal-images",
        type=Path,
        default=None,
        help="folder of calibration images for the image-level test (unlabelled), disjoint from --images and from the feature "
        "density's fit images; default: the second half of --images calibrates, the first half fits",
    )
    p.add_argument("--conformal-split", default=None, help="what the calibration images are, in words, for the card (default: their folder)")
    p.add_argument("--alpha", type=float, default=None, help="false-alarm rate of the image-level test: unusual at p <= alpha (default 0.01)")
    p.add_argument(
        "--sets-tta",
        choices=TTA_MODES,
        default="none",
        help="test-time augmentation the conformal prediction sets are calibrated for (default none): analyses made with it get the "
        "sets' guarantee, others an approximate one; each image is analysed once more with it",
    )


def run(args: argparse.Namespace) -> int:
    """Fit, write ``model.json`` and report ECE before and after and the reference; exit 2 on unusable data."""
    from app.cli.common import load_analyzer, progress_bar
    from app.io.bundle import CARD_FILE, BundleError
    from app.io.masks import DatasetError, pair_files
    from app.metrics.conformal import DEFAULT_ALPHA
    from app.workflows.analyse_folder import expand_inputs
    from app.workflows.calibrate import calibrate_bundle

    if args.samples is not None and args.samples < 0:
        error("--samples must be >= 0")
        return 2
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    if not 0 < alpha < 1:
        error("--alpha must be in (0, 1)")
        return 2
    conformal = None
    if args.conformal_images is not None:
        conformal, _ = expand_inputs([str(args.conformal_images)])
        if not conformal:
            error(f"--conformal-images {args.conformal_images}: no images")
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
            split=args.split,
            progress=progress_bar("calibrate", args.quiet),
            conformal_images=conformal,
            conformal_split=args.conformal_split if args.conformal_split is not None else None if conformal is None else str(args.conformal_images),
            alpha=alpha,
            sets_tta=args.sets_tta,
            command="seg-uncertainty calibrate " + shlex.join(sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "calibrate" else sys.argv[1:]),
        )
    except (BundleError, DatasetError, ValueError) as exc:
        error(exc)
        return 2
    reference, test = fit.image_reference, fit.image_test
    print(
        f"temperature {fit.temperature:.4f}: ECE {fit.ece_before:.4f} -> {fit.ece_after:.4f} on {plural(fit.pixels, 'pixel')}; "
        f"image-level OOD reference: {', '.join(reference.means)} on {plural(reference.images, 'image')}, {plural(reference.samples, 'sample')}; "
        + (
            f"image test: {plural(len(test.components), 'component')} fitted on {plural(test.fit_images, 'image')}, calibrated on {len(test.scores)} "
            f"({test.calibrated_on}), unusual at p <= {test.alpha:g}; "
            if test is not None
            else "no image test (fewer than 3 images: none to calibrate the score on; pass --conformal-images); "
        )
        + f"wrote {analyzer.bundle.path / CARD_FILE}",
        file=sys.stderr,
    )
    return 0
