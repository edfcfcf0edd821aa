"""``analyze``: images → maps, NPZ, JSON per image and a ``summary.csv``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.common import add_analysis_args, error, memory_size, samples_for, tta_for
from app.cli.ray_cluster import add_ray_args
from app.defaults import ADVERSARIAL_STEPS, DEFAULT_ADVERSARIAL_EPSILONS, MAX_PIXELS, MAX_TILED_PIXELS, MEMORY_BUDGET, MIN_AREA, TtaMode
from app.io.npz import RAW_ARRAYS, SAVE_ALL
from app.plural import plural
from app.workflows.outputs import SAVE_NAMES, Outputs, chosen_outputs, parse_save_names

if TYPE_CHECKING:
    from app.cli.interrupt import StopSignals
    from app.request import AnalysisRequest
    from app.workflows.analyse_folder import SummaryRow

DEFAULT_THREADS = 1
COMPILE_MIN_IMAGES = 120  # benchmarks/compile_break_even.py: compiling costs ~13 s once and saves ~0.11 s a photo
NAME = "analyze"
HELP = "analyse images into maps, NPZ, JSON and summary.csv"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("paths", nargs="+", help="image files, folders or globs")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_analysis_args(p)
    p.add_argument("--min-area", type=int, default=MIN_AREA, help="smallest component in the region table, in pixels")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        help="largest image accepted, in pixels (width × height); a larger one fails with a message in summary.csv and the run exits 1",
    )
    p.add_argument(
        "--full-resolution",
        action="store_true",
        help="analyse every input pixel (sliding windows when large) instead of the model's working resolution",
    )
    p.add_argument(
        "--save",
        type=_save_names,
        default=(),
        metavar="NAMES",
        help=f"also write these for each image, comma-separated: {', '.join(SAVE_NAMES)}. png: the prediction and every map as "
        "PNG with its colour bar; npz: maps.npz (maps.zarr when streamed), the maps and labels; json: analysis.json; "
        f"{', '.join(RAW_ARRAYS)}: (C, H, W) float32 arrays added to maps.npz; {SAVE_ALL}: every file and array. "
        "Default: png,npz,json for files named one by one; png only when a PATH is a folder (summary.csv always)",
    )
    p.add_argument(
        "--format",
        choices=("auto", "npz", "zarr"),
        default="auto",
        help="where full-resolution maps go: maps.zarr (chunked Zarr v3, written tile by tile, PNGs as previews of at most 2048 "
        "pixels a side) or maps.npz; auto (default): maps.zarr above 4 megapixels, maps.npz otherwise and at working resolution",
    )
    p.add_argument(
        "--max-tiled-pixels",
        type=int,
        default=MAX_TILED_PIXELS,
        help="largest tiled TIFF or BigTIFF read tile by tile (beyond --max-pixels, which bounds images decoded whole)",
    )
    p.add_argument(
        "--memory-budget",
        type=memory_size,
        default=MEMORY_BUDGET,
        metavar="SIZE",
        help=f"what the engine's working memory may take per image (tiles, MC sample chunks, the blending band; not the "
        f"interpreter, the model or the outputs), e.g. 256M or 1G (default {MEMORY_BUDGET >> 20}M): a lower budget means "
        "smaller sliding-window tiles, a lower peak and a slower full-resolution analysis",
    )
    p.add_argument(
        "--compile-kernels",
        choices=("auto", "yes", "no"),
        default="auto",
        help="compile the Rao–Blackwellised estimator's kernels with torch.compile (about 13 s once per command on a 2-core CPU, "
        f"then 1.7x faster photos; needs a C++ compiler): auto (default) compiles for {COMPILE_MIN_IMAGES} or more images, "
        "where it starts to pay",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"PyTorch threads for the analysis (0: one per core; default {DEFAULT_THREADS}: steady beside other busy processes; "
        "recorded in analysis.json; with --ray each actor has its --cpus-per-actor)",
    )
    p.add_argument(
        "--adversarial",
        action="store_true",
        help="also attack each image (FGSM then PGD steps on the deterministic prediction, at every --adversarial-epsilons radius): "
        "writes flip_epsilon.png, the perturbed images and their predictions, the shares in analysis.json and the arrays in "
        "maps.npz (working resolution only; costs backward passes)",
    )
    p.add_argument(
        "--adversarial-epsilons",
        default=",".join(f"{e:g}" for e in DEFAULT_ADVERSARIAL_EPSILONS),
        metavar="EPSILONS",
        help="L-inf radii of --adversarial in pixel levels of [0, 255], comma-separated (2 means 2/255; default %(default)s)",
    )
    p.add_argument(
        "--adversarial-steps", type=int, default=ADVERSARIAL_STEPS, help=f"PGD steps after the FGSM step at each radius (default {ADVERSARIAL_STEPS})"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ray_args(p, "the analysis on a pool of Ray Data actors, one model each (same outputs)")
    ray = p.add_argument_group("with --ray")
    ray.add_argument("--actors", type=int, default=2, help="actors analysing images at the same time, one model each")
    ray.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs each actor reserves (fractions share a GPU)")
    ray.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs each actor reserves")


def _save_names(text: str) -> tuple[str, ...]:
    """``--save``'s names (:func:`app.workflows.outputs.parse_save_names`); an unknown one is a usage error naming the choices."""
    try:
        return parse_save_names(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every input was analysed, 1 when some failed, 2 on a usage error, 130 when stopped by SIGINT or SIGTERM.

    A signal stops the run after the current image's analysis is cancelled (or its writing finished);
    ``summary.csv`` then lists the images finished before it. A second signal stops at once.
    With ``--ray`` a signal stops it once the next image finishes; the images still on the actors are dropped.
    """
    from app.cli.interrupt import INTERRUPTED_EXIT, StopSignals

    if args.samples is not None and args.samples < 0:
        error("--samples must be >= 0")
        return 2
    if args.threads < 0:
        error("--threads must be >= 0 (0: one per core)")
        return 2
    if args.adversarial and args.full_resolution:
        error("--adversarial runs at the working resolution (the attack needs the whole image's gradients); leave out --full-resolution")
        return 2
    if args.ray and args.format == "zarr":
        error("--format zarr is not available with --ray (its actors send each image's files back whole); leave out --ray")
        return 2
    try:
        _request(args, 0, "none")
    except ValueError as exc:
        error(exc)
        return 2
    if args.ray:
        return _analyse_on_ray(args)
    with StopSignals() as stop:
        try:
            return _analyse(args, stop)
        except KeyboardInterrupt:
            print(f"interrupted by {stop.signal_name or 'SIGINT'} before anything was written", file=sys.stderr)
            return INTERRUPTED_EXIT


def _inputs(args: argparse.Namespace) -> tuple[list[Path], bool] | None:
    """The input files and whether some argument matched nothing; ``None`` (after an error message) when there is nothing to do."""
    from app.workflows.analyse_folder import expand_inputs
    from app.workflows.output_folder import OutputError, prepare_output

    files, missing = expand_inputs(args.paths)
    for item in missing:
        error(f"{item}: no such file, folder or matching glob")
    if not files:
        error("no input images")
        return None
    try:
        prepare_output(args.out)
    except OutputError as exc:
        error(f"--out {exc}")
        return None
    return files, bool(missing)


def _outputs(args: argparse.Namespace) -> Outputs:
    """What each image writes: the run's default (maps only when a PATH is a folder) plus ``--save``'s names."""
    return chosen_outputs(args.save, folder=any(Path(item).is_dir() for item in args.paths))


def _request(args: argparse.Namespace, samples: int, tta: TtaMode) -> AnalysisRequest:
    """The request of a run: ``samples`` and ``tta`` already resolved against the model's card (``samples_for``, ``tta_for``)."""
    from app.request import AnalysisRequest, parse_epsilons

    return AnalysisRequest(
        adversarial=parse_epsilons(args.adversarial_epsilons) if args.adversarial else (),
        adversarial_steps=args.adversarial_steps,
        samples=samples,
        seed=args.seed,
        calibrated=args.calibrated,
        min_area=args.min_area,
        resolution="full" if args.full_resolution else "working",
        tta=tta,
    )


def _analyse(args: argparse.Namespace, stop: StopSignals) -> int:
    """:func:`_analyse_files` with ``--threads`` PyTorch threads and ``--compile-kernels`` (the process's settings restored after)."""
    import torch

    from app.engine.compiled import compilation_enabled, set_compilation

    inputs = _inputs(args)
    if inputs is None:
        return 2
    files, missing = inputs
    threads_before, compiled_before = torch.get_num_threads(), compilation_enabled()
    if args.threads:
        torch.set_num_threads(args.threads)
    set_compilation(compiles(args.compile_kernels, len(files)))
    try:
        return _analyse_files(args, stop, files, missing)
    finally:
        torch.set_num_threads(threads_before)
        set_compilation(compiled_before)


def compiles(choice: str, images: int) -> bool:
    """Whether a command of ``images`` inputs compiles the kernels under ``--compile-kernels choice``."""
    return choice == "yes" or (choice == "auto" and images >= COMPILE_MIN_IMAGES)


def _analyse_files(args: argparse.Namespace, stop: StopSignals, files: list[Path], missing: bool) -> int:
    from tqdm import tqdm

    from app.cli.analysis_bar import AnalysisBar
    from app.cli.common import load_analyzer, progress_bar
    from app.io.bundle import BundleError
    from app.workflows.analyse_folder import analyse_files

    try:
        analyzer = load_analyzer(args.model, args.device, max_pixels=args.max_pixels, memory_budget=args.memory_budget)
    except (BundleError, ValueError) as exc:
        error(exc)
        return 2
    rows = []
    tiles = AnalysisBar(stop.token) if args.full_resolution and not args.quiet else None  # a bar per tile of the image being analysed
    try:
        request = _request(args, samples_for(args.samples, analyzer.bundle.card), tta_for(args.tta, analyzer.bundle.card))
        progress = progress_bar("analyze", args.quiet)
        rows_of = analyse_files(
            analyzer,
            files,
            args.out,
            request,
            progress=progress,
            cancel=stop.token,
            outputs=_outputs(args),
            store_format=args.format,
            max_tiled_pixels=args.max_tiled_pixels,
        )
        for row in rows_of:
            if row.status == "failed":
                tqdm.write(f"error: {row.file}: {row.error}", file=sys.stderr)
            rows.append(row)
            if tiles is not None:
                tiles.next_image()
    except KeyboardInterrupt:
        pass
    finally:
        if tiles is not None:
            tiles.close()
    return _finish(args, len(files), missing, rows, stop)


def _analyse_on_ray(args: argparse.Namespace) -> int:
    """The same analysis on a Ray Data actor pool (:mod:`app.workflows.ray_folder`); rows are written in input order."""
    import torch
    from tqdm import tqdm

    from app.cli.interrupt import StopSignals
    from app.cli.ray_cluster import check_counts, ray_session
    from app.io.bundle import BundleError, load_bundle
    from app.workflows.ray_folder import ActorOptions, analyse_files_ray

    problem = check_counts(actors=args.actors, gpus_per_actor=args.gpus_per_actor, cpus_per_actor=args.cpus_per_actor)
    if problem is not None:
        error(problem)
        return 2
    inputs = _inputs(args)
    if inputs is None:
        return 2
    files, missing = inputs
    try:
        card = load_bundle(args.model, torch.device("cpu")).card  # a missing or malformed bundle is a usage error, before Ray starts
    except BundleError as exc:
        error(exc)
        return 2
    actors = ActorOptions(
        actors=args.actors,
        cpus=args.cpus_per_actor,
        gpus=args.gpus_per_actor,
        memory_budget=args.memory_budget,
        compile_kernels=compiles(args.compile_kernels, len(files)),
    )
    with ray_session(args.ray_address), StopSignals() as stop:
        finished = {}
        try:
            request = _request(args, samples_for(args.samples, card), tta_for(args.tta, card))
            results = analyse_files_ray(args.model, args.device, files, args.out, request, actors, max_pixels=args.max_pixels, outputs=_outputs(args))
            for index, row in tqdm(results, total=len(files), desc="analyze", unit="img", file=sys.stderr, disable=args.quiet):
                if row.status == "failed":
                    tqdm.write(f"error: {row.file}: {row.error}", file=sys.stderr)
                finished[index] = row
                if stop.token.expired():
                    break
        except KeyboardInterrupt:
            pass
        return _finish(args, len(files), missing, [finished[i] for i in sorted(finished)], stop)


def _finish(args: argparse.Namespace, inputs: int, missing: bool, rows: list[SummaryRow], stop: StopSignals) -> int:
    """Write ``summary.csv`` and say how it went; the exit status."""
    from app.cli.interrupt import INTERRUPTED_EXIT
    from app.workflows.analyse_folder import write_summary
    from app.workflows.output_folder import SUMMARY_FILE

    summary = args.out / SUMMARY_FILE
    with stop.held():
        try:
            write_summary(summary, rows)
        except OSError as exc:
            error(f"cannot write {summary}: {exc.strerror or exc}")
            return 2
    failed = sum(r.status == "failed" for r in rows)
    done = f"analysed {len(rows) - failed} of {plural(inputs, 'image')} into {args.out}"
    if stop.signal_name is not None:
        print(f"interrupted by {stop.signal_name}: {done}; {summary} lists the {len(rows)} finished", file=sys.stderr)
        return INTERRUPTED_EXIT
    print(done, file=sys.stderr)
    return 1 if failed or missing else 0
