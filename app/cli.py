"""The ``seg-uncertainty`` command line: serve, analyze, train, export."""

from __future__ import annotations

import argparse
import csv
import glob
import json
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm import tqdm

from app.analysis import MAP_NAMES, Analyzer, resolve_device
from app.bundle import BundleError, load_bundle
from app.imaging import DEFAULT_MAX_PIXELS, ImageDecodeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"}


def expand_inputs(items: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Files, folders (their image files, recursively) and globs → sorted unique files.

    Returns:
        The files, and the arguments that matched nothing.
    """
    found: list[Path] = []
    missing: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if matches:
                found += matches
            else:
                missing.append(item)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, missing


def _out_name(path: Path, used: set[str]) -> str:
    name, k = path.stem, 2
    while name in used:
        name, k = f"{path.stem}_{k}", k + 1
    used.add(name)
    return name


def cmd_analyze(args: argparse.Namespace) -> int:
    """Analyse images and write PNGs, NPZ, JSON per image and a summary.csv."""
    from app.encode import map_pngs, npz_bytes, summary

    if args.samples < 0:
        print("error: --samples must be >= 0", file=sys.stderr)
        return 2
    files, missing = expand_inputs(args.paths)
    for item in missing:
        print(f"error: {item}: no such file, folder or matching glob", file=sys.stderr)
    if not files:
        print("error: no input images", file=sys.stderr)
        return 2
    try:
        device = resolve_device(args.device)
        bundle = load_bundle(args.model, device)
    except (BundleError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    analyzer = Analyzer(bundle, device, max_pixels=args.max_pixels)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], len(missing)
    used: set[str] = set()
    for path in tqdm(files, desc="analyze", unit="img", file=sys.stderr, disable=args.quiet):
        name = _out_name(path, used)
        row: dict[str, object] = {"file": str(path), "output": name}
        try:
            started = time.perf_counter()
            analysis = analyzer.analyze_bytes(path.read_bytes(), samples=args.samples, seed=args.seed, calibrated=args.calibrated, min_area=args.min_area)
            target = args.out / name
            target.mkdir(parents=True, exist_ok=True)
            for key, png in map_pngs(analysis, bundle.card).items():
                (target / f"{key}.png").write_bytes(png)
            (target / "maps.npz").write_bytes(npz_bytes(analysis))
            info = summary(analysis, bundle.card)
            info["timings"]["total"] = round(time.perf_counter() - started, 6)
            info["source"] = str(path)
            (target / "analysis.json").write_text(json.dumps(info, indent=2))
            row.update(status="ok", error="", width=analysis.width, height=analysis.height, samples=analysis.samples, seconds=info["timings"]["total"])
            row.update({f"mean_{k}": info["maps"][k]["mean"] for k in MAP_NAMES})
        except (ImageDecodeError, OSError) as exc:
            failed += 1
            message = exc.message if isinstance(exc, ImageDecodeError) else str(exc)
            row.update(status="failed", error=message)
            tqdm.write(f"error: {path}: {message}", file=sys.stderr)
        rows.append(row)
    _write_summary(args.out / "summary.csv", rows)
    print(f"analysed {len(files) - (failed - len(missing))} of {len(files)} images into {args.out}", file=sys.stderr)
    return 1 if failed else 0


def _write_summary(path: Path, rows: Sequence[dict[str, object]]) -> None:
    fields = ["file", "output", "status", "error", "width", "height", "samples", "seconds"] + [f"mean_{k}" for k in MAP_NAMES]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in fields})


def cmd_train(args: argparse.Namespace) -> int:
    """Train the default model (see :mod:`app.train`)."""
    from app.train import train

    train(args)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Turn a state-dict file into a bundle (see :mod:`app.export`)."""
    from app.export import export_state_dict_file

    try:
        out = export_state_dict_file(args.weights, args.card, args.out)
    except (BundleError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote bundle {out}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the web app with uvicorn."""
    import os

    import uvicorn

    from app.web.factory import create_app
    from app.web.settings import Settings

    if args.model:
        os.environ["SEGU_MODEL"] = args.model
    if args.device:
        os.environ["SEGU_DEVICE"] = args.device
    uvicorn.run(create_app(Settings()), host=args.host, port=args.port, log_level="info")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    from app.train import build_parser as train_parser

    parser = argparse.ArgumentParser(prog="seg-uncertainty", description="Per-pixel uncertainty maps for semantic segmentation.")
    sub = parser.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="analyse images into maps, NPZ, JSON and summary.csv")
    a.add_argument("paths", nargs="+", help="image files, folders or globs")
    a.add_argument("--out", type=Path, required=True, help="output folder")
    a.add_argument("--samples", type=int, default=20, help="MC dropout samples T (0: deterministic only)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--model", default="default", help="bundle name under models/ or a bundle folder")
    a.add_argument("--device", default="auto", help="auto, cpu or cuda")
    a.add_argument("--calibrated", action="store_true", help="apply the bundle's temperature")
    a.add_argument("--min-area", type=int, default=64, help="smallest component in the region table, in pixels")
    a.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_analyze)

    t = sub.add_parser("train", help="train the default model on synthetic scenes")
    train_parser(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("export", help="turn an smp state-dict file into a bundle")
    e.add_argument("weights", type=Path, help=".safetensors state dict of the smp model")
    e.add_argument("--card", type=Path, required=True, help="model.json describing architecture, classes, dropout")
    e.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    e.set_defaults(func=cmd_export)

    s = sub.add_parser("serve", help="serve the web app")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--model", default=None, help="bundle name or folder (default: env SEGU_MODEL or 'default')")
    s.add_argument("--device", default=None, help="auto, cpu or cuda (default: env SEGU_DEVICE or auto)")
    s.set_defaults(func=cmd_serve)

    from app.cli_eval import register

    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``seg-uncertainty`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))
