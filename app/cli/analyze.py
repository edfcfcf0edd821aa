"""``analyze``: images → maps, NPZ, JSON per image and a ``summary.csv``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.common import add_model_args, error
from app.defaults import DEFAULT_SAMPLES, DEFAULT_SEED, MAX_PIXELS, MIN_AREA

if TYPE_CHECKING:
    from app.cli.interrupt import StopSignals

NAME = "analyze"
HELP = "analyse images into maps, NPZ, JSON and summary.csv"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("paths", nargs="+", help="image files, folders or globs")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="MC dropout samples T (0: deterministic only)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    add_model_args(p)
    p.add_argument("--calibrated", action="store_true", help="apply the bundle's temperature")
    p.add_argument("--min-area", type=int, default=MIN_AREA, help="smallest component in the region table, in pixels")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS)
    p.add_argument(
        "--full-resolution",
        action="store_true",
        help="analyse every input pixel (sliding windows when large) instead of the model's working resolution",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every input was analysed, 1 when some failed, 2 on a usage error, 130 when stopped by SIGINT or SIGTERM.

    A signal stops the run after the current image's analysis is cancelled (or its writing finished);
    ``summary.csv`` then lists the images finished before it. A second signal stops at once.
    """
    from app.cli.interrupt import INTERRUPTED_EXIT, StopSignals

    if args.samples < 0:
        error("--samples must be >= 0")
        return 2
    with StopSignals() as stop:
        try:
            return _analyse(args, stop)
        except KeyboardInterrupt:
            print(f"interrupted by {stop.signal_name or 'SIGINT'} before anything was written", file=sys.stderr)
            return INTERRUPTED_EXIT


def _analyse(args: argparse.Namespace, stop: StopSignals) -> int:
    from tqdm import tqdm

    from app.cli.common import load_analyzer, progress_bar
    from app.cli.interrupt import INTERRUPTED_EXIT
    from app.io.bundle import BundleError
    from app.workflows.analyse_folder import AnalysisOptions, analyse_files, expand_inputs, write_summary
    from app.workflows.output_folder import SUMMARY_FILE, OutputError, prepare_output

    files, missing = expand_inputs(args.paths)
    for item in missing:
        error(f"{item}: no such file, folder or matching glob")
    if not files:
        error("no input images")
        return 2
    try:
        prepare_output(args.out)
    except OutputError as exc:
        error(f"--out {exc}")
        return 2
    try:
        analyzer = load_analyzer(args.model, args.device, max_pixels=args.max_pixels)
    except (BundleError, ValueError) as exc:
        error(exc)
        return 2
    options = AnalysisOptions(
        samples=args.samples, seed=args.seed, calibrated=args.calibrated, min_area=args.min_area, resolution="full" if args.full_resolution else "working"
    )
    rows = []
    try:
        for row in analyse_files(analyzer, files, args.out, options, progress=progress_bar("analyze", args.quiet), cancel=stop.token):
            if row.status == "failed":
                tqdm.write(f"error: {row.file}: {row.error}", file=sys.stderr)
            rows.append(row)
    except KeyboardInterrupt:
        pass
    summary = args.out / SUMMARY_FILE
    with stop.held():
        try:
            write_summary(summary, rows)
        except OSError as exc:
            error(f"cannot write {summary}: {exc.strerror or exc}")
            return 2
    failed = sum(r.status == "failed" for r in rows)
    done = f"analysed {len(rows) - failed} of {len(files)} images into {args.out}"
    if stop.signal_name is not None:
        print(f"interrupted by {stop.signal_name}: {done}; {summary} lists the {len(rows)} finished", file=sys.stderr)
        return INTERRUPTED_EXIT
    print(done, file=sys.stderr)
    return 1 if failed or missing else 0
