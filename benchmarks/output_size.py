"""Bytes an ``analyze --full-resolution`` output folder takes per pixel, old layout vs ``--save all`` vs the default, and how
far below the maps' Monte-Carlo error the default's float16 rounding lies.

Makes a ``--width`` x ``--height`` JPEG (quality 90) from ``skimage.data.astronaut`` (resized), analyses it at full
resolution with the default model (its default samples) once per seed, and writes each analysis's files exactly as
``analyze`` does (:func:`app.workflows.analyse_folder.analysis_files`), in memory:

- old: what this project wrote before: RGB PNGs and an archive of every map and the ``(C, H, W)`` arrays as float32,
  floats stored and integers deflated;
- ``--save all``: palette PNGs; float16 maps (``feature_distance`` float32) plus the three float32 ``(C, H, W)`` arrays, deflated;
- default: palette PNGs; the maps and labels only, deflated.

Bytes per pixel are extrapolated to 12 megapixels (4000 x 3000); ``--width 4000 --height 3000 --seeds 1`` measures
that size itself (sizes only). A 12-megapixel photo's maps are smoother per pixel than a 1000 x 750 one's, so they
compress better there.

Precision: per map, the float16 rounding error ``|x - fp16(x)|`` (RMS and maximum over the pixels) against the map's
per-pixel MC standard deviation, estimated from the ``--seeds`` analyses (sample standard deviation across seeds at
each pixel, RMS over pixels), and the shift of the image mean against its reported MC standard error
(``mean_errors``). ``confidence`` comes from the deterministic pass (no MC error): its rounding is compared with the
MC-dropout spread of the same probability, ``sqrt(variance)``.

Usage: python benchmarks/output_size.py [--width 1000] [--height 750] [--seeds 4] [--model default]
(``--seeds 1``: sizes only, no precision table)
"""

from __future__ import annotations

import argparse
import io
import time
import zipfile

import numpy as np
import torch
from PIL import Image

from app.cli.common import load_analyzer
from app.engine.analysis import Analysis
from app.io.encoding import map_pngs
from app.io.npz import FLOAT32_MAPS, RAW_ARRAYS, full_arrays
from app.maps.registry import MAP_NAMES
from app.request import AnalysisRequest
from app.workflows.analyse_folder import analysis_files

TARGET_PIXELS = 4000 * 3000
MB = 1e6


def astronaut_jpeg(width: int, height: int) -> bytes:
    """``skimage.data.astronaut`` resized to ``width x height`` (bicubic), as a quality-90 JPEG."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def old_npz(analysis: Analysis) -> bytes:
    """The archive of the previous layout: every array as :func:`~app.io.npz.full_arrays` gives it (float32), floats
    stored and integer arrays deflated."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, mode="w", allowZip64=True) as archive:
        for name, array in full_arrays(analysis).items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if np.issubdtype(array.dtype, np.integer) else zipfile.ZIP_STORED
            with archive.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def sizes(files: dict[str, bytes]) -> dict[str, int]:
    """Bytes of the PNGs, the archive, ``analysis.json`` and all of them."""
    png = sum(len(v) for k, v in files.items() if k.endswith(".png"))
    return {"png": png, "npz": len(files["maps.npz"]), "json": len(files["analysis.json"]), "total": sum(len(v) for v in files.values())}


def print_sizes(analysis: Analysis, card_files: dict[str, dict[str, bytes]], seconds: dict[str, float]) -> None:
    pixels = analysis.width * analysis.height
    print(f"\noutput bytes, {analysis.width}x{analysis.height} = {pixels} px, C = {analysis.num_classes}, T = {analysis.samples}")
    print(f"{'layout':<12} {'npz B/px':>9} {'PNGs B/px':>10} {'total B/px':>11} {'write s':>7} {'12 MP npz MB':>13} {'12 MP total MB':>15}")
    for layout, files in card_files.items():
        s = sizes(files)
        print(
            f"{layout:<12} {s['npz'] / pixels:9.2f} {s['png'] / pixels:10.2f} {s['total'] / pixels:11.2f} {seconds[layout]:7.2f}"
            f" {s['npz'] / pixels * TARGET_PIXELS / MB:13.1f} {s['total'] / pixels * TARGET_PIXELS / MB:15.1f}"
        )


def member_sizes(data: bytes) -> dict[str, int]:
    """Compressed bytes of each array of an ``.npz``."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename.removesuffix(".npy"): info.compress_size for info in archive.infolist()}


def print_members(analysis: Analysis, data: bytes) -> None:
    """Bytes per pixel of each array of the default archive, deflated (as written) and as bzip2 would store it."""
    pixels = analysis.width * analysis.height
    deflated = member_sizes(data)
    with np.load(io.BytesIO(data)) as loaded:
        arrays = {name: loaded[name] for name in loaded.files}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, mode="w", compression=zipfile.ZIP_BZIP2) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=False)
            archive.writestr(f"{name}.npy", member.getvalue())
    bzipped = member_sizes(buf.getvalue())
    print("\ndefault maps.npz per array, B/px: deflate (written) | bzip2 (numpy.load reads it too; not used)")
    for name, size in deflated.items():
        print(f"  {name:<20} {arrays[name].dtype!s:>8} {size / pixels:6.2f} | {bzipped[name] / pixels:6.2f}")
    print(f"  {'all':<20} {'':>8} {sum(deflated.values()) / pixels:6.2f} | {sum(bzipped.values()) / pixels:6.2f}")


def print_precision(runs: list[Analysis]) -> None:
    first = runs[0]
    print(f"\nfloat16 rounding vs MC error ({len(runs)} seeds; per-pixel MC sd = sample sd across the seeds, RMS over pixels)")
    print(f"{'map':<20} {'stored':>8} {'err RMS':>9} {'err max':>9} {'MC sd RMS':>10} {'RMS ratio':>10} {'|Δmean|':>9} {'mean SE':>9}")
    for name in MAP_NAMES:
        x = first.maps[name].astype(np.float64)
        error = np.abs(first.maps[name].astype(np.float16).astype(np.float64) - x)
        stack = np.stack([r.maps[name].astype(np.float64) for r in runs])
        sd = np.sqrt(np.mean(stack.var(axis=0, ddof=1)))
        shift = abs(float(first.maps[name].astype(np.float16).astype(np.float64).mean() - x.mean()))
        se = first.mean_errors.get(name)
        ratio = f"{np.sqrt(np.mean(error**2)) / sd:10.4f}" if sd > 0 else f"{'—':>10}"
        stored = "float32" if name in FLOAT32_MAPS else "float16"
        se_text = f"{se:9.2e}" if se else f"{'—':>9}"
        print(f"{name:<20} {stored:>8} {np.sqrt(np.mean(error**2)):9.2e} {error.max():9.2e} {sd:10.2e} {ratio} {shift:9.2e} {se_text}")
    conf = first.maps["confidence"].astype(np.float64)
    spread = np.sqrt(first.maps["variance"].astype(np.float64))
    rel = np.abs(conf.astype(np.float16).astype(np.float64) - conf) / np.maximum(spread, 1e-30)
    print(
        f"confidence: rounding / sqrt(variance): median {np.median(rel):.4f}, 99th percentile {np.quantile(rel, 0.99):.3f}; "
        f"pixels where it exceeds 0.1: {np.mean(rel > 0.1):.2%}"
    )
    fd = first.maps["feature_distance"].astype(np.float64)
    print(
        f"feature_distance (kept float32): pixels above the largest float16 below 1 (1 - 2^-11), which float16 would merge: {np.mean(fd > 1 - 2**-11):.2%}; "
        f"distinct float32 values there: {np.unique(fd[fd > 1 - 2**-11]).size}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=750)
    parser.add_argument("--seeds", type=int, default=4, help="analyses with seeds 0.. for the MC error (1: sizes only)")
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    torch.manual_seed(0)
    jpeg = astronaut_jpeg(args.width, args.height)
    analyzer = load_analyzer(args.model, "cpu")
    card = analyzer.bundle.card
    runs = []
    for seed in range(max(1, args.seeds)):
        started = time.perf_counter()
        runs.append(analyzer.analyze_bytes(jpeg, AnalysisRequest(samples=card.samples_default(), seed=seed, resolution="full", tta=card.tta_default())))
        print(f"seed {seed}: analysed in {time.perf_counter() - started:.1f} s")
    analysis = runs[0]
    files: dict[str, dict[str, bytes]] = {}
    seconds: dict[str, float] = {}
    for layout, save in (("old", None), ("--save all", RAW_ARRAYS), ("default", ())):
        started = time.perf_counter()
        written, _ = analysis_files(analysis, card, "astronaut.jpg", 0.0, save or ())
        if save is None:  # the previous writer: RGB PNGs, float32 arrays stored
            written.update({f"{key}.png": png for key, png in map_pngs(analysis, card).items()})
            written["maps.npz"] = old_npz(analysis)
        files[layout] = written
        seconds[layout] = time.perf_counter() - started
    print_sizes(analysis, files, seconds)
    print_members(analysis, files["default"]["maps.npz"])
    if len(runs) > 1:
        print_precision(runs)


if __name__ == "__main__":
    main()
