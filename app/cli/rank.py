"""``rank``: which images of a folder to label first (ranking.csv, gallery.html, Label Studio tasks)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.common import add_analysis_args, error, samples_for, tta_for
from app.defaults import MAX_PIXELS
from app.plural import plural

NAME = "rank"
HELP = "rank a folder's images by an uncertainty score: which to label first (ranking.csv, gallery.html, Label Studio tasks)"
DEFAULT_BUDGET = 10
DEFAULT_BY = "mi"
DEFAULT_PREFIX = "/data/local-files/?d="


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("paths", nargs="+", help="image folders, files or globs")
    p.add_argument("--out", type=Path, required=True, help="output folder (rerun with the same one to continue an interrupted run)")
    p.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help=f"how many images to pick for labelling (default {DEFAULT_BUDGET})")
    p.add_argument(
        "--by",
        default=DEFAULT_BY,
        help="the image-level score: the image mean of a map, higher = label first: mi (mutual information, the default), "
        "entropy, expected_entropy, variance, feature_distance, confidence (scored as 1 − mean confidence)",
    )
    p.add_argument("--diverse", action="store_true", help="pick the batch among the 3 × budget top scores by k-center greedy on the images' features")
    add_analysis_args(p)
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="largest image accepted, in pixels; a larger one is listed as failed")
    p.add_argument(
        "--image-prefix",
        default=DEFAULT_PREFIX,
        help="put before each image's path (relative to the ranked folder) in a Label Studio task's data.image "
        f"(default {DEFAULT_PREFIX!r}: Label Studio's local files, with LOCAL_FILES_DOCUMENT_ROOT at the folder)",
    )
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads (0: one per core; default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every image was ranked, 1 when some could not be analysed, 2 on a usage error, 130 when interrupted
    (what was analysed is kept: the same command continues)."""
    import torch

    from app.cli.common import load_analyzer, progress_bar
    from app.cli.interrupt import INTERRUPTED_EXIT, StopSignals
    from app.engine.cancel import AnalysisCancelled
    from app.io.bundle import BundleError
    from app.request import AnalysisRequest
    from app.workflows.analyse_folder import expand_inputs
    from app.workflows.output_folder import OutputError, prepare_output, utf8_name
    from app.workflows.rank_records import resolve_by
    from app.workflows.ranking import GALLERY_FILE, RANKING_FILE, TASKS_FILE, analyse_records, choose, common_folder, write_outputs

    if args.budget < 1:
        error("--budget must be >= 1")
        return 2
    if args.threads < 0 or (args.samples is not None and args.samples < 0):
        error("--threads and --samples must be >= 0")
        return 2
    try:
        by = resolve_by(args.by)
    except KeyError as exc:
        error(f"--by: {exc.args[0]} (or mi)")
        return 2
    files, missing = expand_inputs(args.paths)
    out = args.out.resolve()
    files = [f for f in files if not f.resolve().is_relative_to(out)]
    for item in missing:
        error(f"{item}: no such file, folder or matching glob")
    if not files:
        error("no input images" + (f" (files under --out {args.out} are never ranked)" if not missing else ""))
        return 2
    try:
        prepare_output(args.out)
        analyzer = load_analyzer(args.model, args.device, max_pixels=args.max_pixels)
    except (OutputError, BundleError, ValueError) as exc:
        error(exc)
        return 2
    if by in analyzer.unavailable:
        error(f"--by {args.by}: model {analyzer.bundle.card.name} cannot compute {by} (see seg-uncertainty fit-density --help)")
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    card = analyzer.bundle.card
    samples, tta = samples_for(args.samples, card), tta_for(args.tta, card)
    request = AnalysisRequest(samples=samples, seed=args.seed, calibrated=args.calibrated, tta=tta, class_arrays=False)
    folder = common_folder(files, [Path(p) for p in args.paths if Path(p).is_dir()])
    records, reused = [], 0
    with StopSignals() as stop:
        try:
            for record, again in analyse_records(analyzer, files, args.out, request, args.diverse, progress_bar("rank", args.quiet), stop.token):
                records.append(record)
                reused += again
        except (AnalysisCancelled, KeyboardInterrupt):
            print(f"interrupted: {len(records)} of {plural(len(files), 'image')} analysed and kept; run the same command to continue", file=sys.stderr)
            return INTERRUPTED_EXIT
    ranking = choose(records, by, args.budget, args.diverse)
    try:
        write_outputs(args.out, ranking, analyzer, folder, args.image_prefix)
    except OSError as exc:
        error(f"cannot write the outputs in {args.out}: {exc.strerror or exc}")
        return 2
    failed = [r for r in records if r.status != "ok"]
    for r in failed:
        error(f"{utf8_name(r.file)}: {r.error}")
    kept = f" ({reused} from an earlier run)" if reused else ""
    print(
        f"ranked {plural(len(records) - len(failed), 'image')}{kept} by {by}; batch of {len(ranking.batch)}: "
        f"{args.out / RANKING_FILE}, {args.out / GALLERY_FILE}, {args.out / TASKS_FILE}",
        file=sys.stderr,
    )
    return 1 if failed or missing else 0
