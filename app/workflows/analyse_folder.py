"""Analyse many images into one output folder: maps as PNG, ``maps.npz``, ``analysis.json`` per image, ``summary.csv``.

Each input's folder is named by :func:`~app.workflows.output_folder.output_names`, written under a hidden
staging name and moved into place once complete, so an interrupted run leaves no half-written folder. Input names in
``summary.csv`` and ``analysis.json`` are :func:`~app.workflows.output_folder.utf8_name`'s: valid UTF-8 whatever their bytes.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from app.defaults import IMAGE_SUFFIXES
from app.engine.analysis import Analysis
from app.engine.cancel import AnalysisCancelled, CancelToken
from app.engine.free_memory import release_free_memory
from app.io.adversarial_files import adversarial_pngs
from app.io.bundle import ModelCard
from app.io.decoding import ImageDecodeError, probe_image
from app.io.encoding import summarise
from app.io.legend import legend_pngs
from app.io.npz import npz_sources, write_npz
from app.io.pixel_source import TiledImageError, TiledTiffSource, is_tiled_tiff, open_tiled_tiff
from app.io.zarr_store import STORE_NAME
from app.maps.registry import DETECTION_MAPS, MAP_NAMES
from app.request import AnalysisRequest
from app.workflows.adversarial import AttackTooLarge
from app.workflows.analyzer import Analyzer
from app.workflows.output_folder import install_folder, output_names, utf8_name
from app.workflows.outputs import FILE_DEFAULT, Outputs
from app.workflows.stream_folder import MAX_TILED_PIXELS, StoreFormat, reduced_rgb, store_image, streams

__all__ = [
    "AnalysedImage",
    "Streaming",
    "SummaryRow",
    "analyse_files",
    "analyse_image",
    "analysis_files",
    "expand_inputs",
    "fill_row",
    "install_image",
    "summary_fields",
    "write_summary",
]

SUMMARY_FIELDS = (
    "file",
    "output",
    "status",
    "error",
    "input_width",
    "input_height",
    "width",
    "height",
    "resolution",
    "samples",
    "estimator",
    "seconds",
    *(f"mean_{k}" for k in MAP_NAMES),
    *(f"se_{k}" for k in MAP_NAMES),
    "unusual",
    "image_check",
    "p_value",
    *(f"percentile_{k}" for k in DETECTION_MAPS),
)
OPTIONAL_FIELDS: frozenset[str] = frozenset(f"percentile_{k}" for k in DETECTION_MAPS)
"""Columns written only when some row of the run has a value: a map's percentile among the model's validation images
exists only where the model has a reference for it (``percentile_feature_distance`` only with a fitted feature density)."""


@dataclass
class SummaryRow:
    """One line of ``summary.csv``: an input, where its outputs went, how it went and the image-level OOD verdict.

    ``image_check`` is the image-level verdict (:mod:`app.metrics.conformal`): ``unusual``, ``not_flagged`` (the test did
    not reject, which does not show the image is like the training data) or ``not_checked`` (no reference for this model
    or setting); ``p_value`` its conformal p-value; ``unusual`` is ``yes`` or ``no`` when the image was checked, blank
    otherwise; ``percentile_<map>`` are where each map's image mean falls among the model's validation images.
    """

    file: str
    output: str
    status: str = ""
    error: str = ""
    width: int | None = None
    height: int | None = None
    samples: int | None = None
    estimator: str | None = None
    seconds: float | None = None
    input_width: int | None = None
    input_height: int | None = None
    resolution: str | None = None
    means: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float | None] = field(default_factory=dict)
    unusual: bool | None = None
    percentiles: dict[str, float] = field(default_factory=dict)
    image_check: str | None = None
    p_value: float | None = None

    def csv_row(self) -> dict[str, object]:
        """The row keyed by :data:`SUMMARY_FIELDS` (blank for unknown values)."""
        values: dict[str, object] = {
            "file": utf8_name(self.file),
            "output": utf8_name(self.output),
            "status": self.status,
            "error": utf8_name(self.error),
            "width": self.width,
            "height": self.height,
            "samples": self.samples,
            "estimator": self.estimator,
            "seconds": self.seconds,
            "input_width": self.input_width,
            "input_height": self.input_height,
            "resolution": self.resolution,
            "unusual": None if self.unusual is None else ("yes" if self.unusual else "no"),
            "image_check": self.image_check,
            "p_value": None if self.p_value is None else round(self.p_value, 6),
        }
        values.update({f"mean_{k}": v for k, v in self.means.items()})
        values.update({f"se_{k}": v for k, v in self.errors.items()})
        values.update({f"percentile_{k}": round(v, 2) for k, v in self.percentiles.items()})
        return {k: "" if values.get(k) is None else values[k] for k in SUMMARY_FIELDS}


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


@dataclass
class AnalysedImage:
    """One analysed input: its summary row and, when it succeeded in memory, its output files (file name → bytes);
    ``installed`` when its folder was written already (streamed to ``maps.zarr``)."""

    row: SummaryRow
    files: dict[str, bytes] = field(default_factory=dict)
    installed: bool = False


@dataclass(frozen=True)
class Streaming:
    """Where and when inputs stream to ``maps.zarr`` (:mod:`app.workflows.stream_folder`).

    Attributes:
        out: The output folder streamed inputs are written into.
        format: ``auto`` (full resolution beyond 4 megapixels), ``zarr`` (every full-resolution input) or ``npz`` (none,
            but tiled TIFFs beyond ``--max-pixels``).
        max_tiled_pixels: The largest tiled TIFF read tile by tile.
    """

    out: Path
    format: StoreFormat = "auto"
    max_tiled_pixels: int = MAX_TILED_PIXELS


def analysis_files(
    analysis: Analysis, card: ModelCard, source: str, seconds: float, outputs: Outputs = FILE_DEFAULT
) -> tuple[dict[str, bytes], dict[str, float]]:
    """One analysis's output files (map PNGs, ``maps.npz``, ``analysis.json``: those ``outputs`` asks for) as bytes, and its map means.

    The PNGs stand alone (:mod:`app.io.legend`): each map's palette PNG has its name, fixed range, scale and colour bar in
    a strip below it, the prediction's its class names and colours; the map itself is the image's top-left ``H × W``.
    ``maps.npz`` holds the maps and labels, plus the ``(C, H, W)`` arrays named in ``outputs.arrays`` (:mod:`app.io.npz`);
    ``analysis.json`` records each array's dtype under ``npz``.
    """
    files: dict[str, bytes] = {}
    if outputs.png:
        files.update({f"{key}.png": png for key, png in legend_pngs(analysis, card).items()})
        if analysis.adversarial is not None:
            files.update(adversarial_pngs(analysis.adversarial, [c.colour for c in card.classes]))
        release_free_memory()  # the colour entries' and the encoder's buffers, before the archive's
    info = summarise(analysis, card)
    if outputs.npz:
        arrays, dtypes = npz_sources(analysis, outputs.arrays)
        files["maps.npz"] = write_npz(arrays, dtypes)
        info.npz = {name: str(dtype) for name, dtype in dtypes.items()}
    if outputs.json:
        info.timings["total"] = round(seconds, 6)
        info.source = utf8_name(source)
        info.threads = torch.get_num_threads()
        files["analysis.json"] = json.dumps(info.to_json(), indent=2).encode()
    return files, {k: m.mean for k, m in info.maps.items()}


def analyse_image(
    analyzer: Analyzer,
    path: Path,
    name: str,
    request: AnalysisRequest,
    cancel: CancelToken | None = None,
    outputs: Outputs = FILE_DEFAULT,
    streaming: Streaming | None = None,
) -> AnalysedImage:
    """Analyse the file ``path`` (whose output folder will be ``name``) into its row and files.

    An input that cannot be read gives a ``failed`` row and no files. ``outputs``: the files written
    (:mod:`app.workflows.outputs`) and the ``(C, H, W)`` arrays ``maps.npz`` adds; the analysis keeps those arrays only then
    (``request.class_arrays`` is set to whether ``outputs.arrays`` names one: nothing else written needs them, and at full
    resolution they would be ``12·C`` bytes a pixel).
    With ``streaming`` an input that streams (:mod:`app.workflows.stream_folder`: full resolution beyond 4 megapixels, or a
    tiled TIFF beyond ``--max-pixels``) is written straight into ``streaming.out`` and its result is marked ``installed``;
    without it, nothing is written.

    Raises:
        app.engine.cancel.AnalysisCancelled: ``cancel`` was cancelled during the analysis.
    """
    row = SummaryRow(file=str(path), output=name)
    kept = replace(request, class_arrays=bool(outputs.arrays))
    try:
        started = time.perf_counter()
        tiled = _tiled_source(analyzer, path, streaming)
        if tiled is not None:
            with tiled:
                size = (tiled.height, tiled.width)
                if streaming is not None and request.resolution == "full":
                    means, analysis = store_image(analyzer, tiled, str(path), name, request, streaming.out, outputs, cancel)
                    return AnalysedImage(fill_row(row, analysis, means, time.perf_counter() - started), installed=True)
                rgb = reduced_rgb(tiled, analyzer.analysed_shape(*size, "working"), cancel)
            analysis = analyzer.analyze_image(rgb, kept, cancel=cancel, input_size=size)
        else:
            data = path.read_bytes()
            header = probe_image(data, analyzer.max_pixels)
            if streaming is not None and streams(streaming.format, request, header.width * header.height):
                rgb = analyzer.decode(data, cancel=cancel)
                means, analysis = store_image(analyzer, rgb, str(path), name, request, streaming.out, outputs, cancel)
                return AnalysedImage(fill_row(row, analysis, means, time.perf_counter() - started), installed=True)
            analysis = analyzer.analyze_bytes(data, kept, cancel=cancel)
        seconds = time.perf_counter() - started
    except (ImageDecodeError, TiledImageError) as exc:
        row.status, row.error = "failed", exc.message
        return AnalysedImage(row)
    except (OSError, AttackTooLarge) as exc:
        row.status, row.error = "failed", str(exc)
        return AnalysedImage(row)
    files, means = analysis_files(analysis, analyzer.bundle.card, str(path), seconds, outputs)
    return AnalysedImage(fill_row(row, analysis, means, seconds), files)


def _tiled_source(analyzer: Analyzer, path: Path, streaming: Streaming | None) -> TiledTiffSource | None:
    """A reader of ``path`` when it is a tiled TIFF too large to decode whole (and ``streaming`` allows it), else ``None``.

    Raises:
        app.io.pixel_source.TiledImageError: the TIFF is beyond ``streaming.max_tiled_pixels`` or unreadable.
    """
    if streaming is None or not is_tiled_tiff(path):
        return None
    source = open_tiled_tiff(path, streaming.max_tiled_pixels)
    if source.height * source.width <= analyzer.max_pixels:
        source.close()
        return None
    return source


def fill_row(row: SummaryRow, analysis: Analysis, means: dict[str, float], seconds: float) -> SummaryRow:
    """``row`` completed from a finished analysis: status ``ok``, sizes, settings, means, errors and verdicts."""
    row.means = means
    row.status, row.width, row.height, row.samples, row.seconds = "ok", analysis.width, analysis.height, analysis.samples, round(seconds, 6)
    row.input_height, row.input_width = analysis.input_size or analysis.analysed_size
    row.resolution = analysis.resolution
    row.errors = dict(analysis.mean_errors)
    row.estimator = analysis.estimator
    if analysis.image_ood:
        row.percentiles = {v.map: v.percentile for v in analysis.image_ood}
    if analysis.image_check is not None:
        row.image_check, row.p_value = analysis.image_check.status, analysis.image_check.p_value
        row.unusual = None if analysis.image_check.status == "not_checked" else analysis.image_check.status == "unusual"
    return row


def install_image(image: AnalysedImage, out: Path) -> SummaryRow:
    """Write an analysed input's files into ``out/<row.output>/`` (through a hidden staging folder); returns its row.

    A failed input writes nothing. Files that cannot be written give a ``failed`` row carrying the error.
    """
    row = image.row
    if image.installed or not image.files:
        return row
    staging = out / f".{row.output}.partial"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name, data in image.files.items():
            (staging / name).write_bytes(data)
        install_folder(staging, out / row.output, superseded=(STORE_NAME,))
    except OSError as exc:
        return SummaryRow(file=row.file, output=row.output, status="failed", error=str(exc))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return row


def analyse_files(
    analyzer: Analyzer,
    files: Sequence[Path],
    out: Path,
    request: AnalysisRequest,
    progress: Callable[[Sequence[Path]], Iterable[Path]] = iter,
    cancel: CancelToken | None = None,
    outputs: Outputs = FILE_DEFAULT,
    store_format: StoreFormat = "auto",
    max_tiled_pixels: int = MAX_TILED_PIXELS,
) -> Iterator[SummaryRow]:
    """Analyse ``files`` into ``out/<name>/`` (names from :func:`output_names`), yielding each input's summary row.

    An input that cannot be read yields a ``failed`` row and the others go on. Once ``cancel`` is cancelled
    the run stops: the image being analysed is dropped (nothing of it is written) and no row is yielded for it.

    Args:
        analyzer: The model's analyser.
        files: Inputs (see :func:`expand_inputs`).
        out: Output folder (created).
        request: How every image is analysed.
        progress: Wraps the file list, e.g. in a progress bar.
        cancel: Stops the run between images and inside an analysis (see :mod:`app.engine.cancel`).
        outputs: The files written for each input and the ``(C, H, W)`` arrays each ``maps.npz`` (or ``maps.zarr``) adds to
            the maps (:mod:`app.workflows.outputs`); by default the PNGs, ``maps.npz`` and ``analysis.json``, no class arrays.
        store_format: Which full-resolution inputs stream to ``maps.zarr`` (:class:`Streaming`).
        max_tiled_pixels: The largest tiled TIFF read tile by tile.
    """
    out.mkdir(parents=True, exist_ok=True)
    for path, name in zip(progress(files), output_names(files), strict=True):
        if cancel is not None and cancel.expired():
            return
        try:
            image = analyse_image(analyzer, path, name, request, cancel, outputs, Streaming(out, store_format, max_tiled_pixels))
        except AnalysisCancelled:
            return
        yield install_image(image, out)


def summary_fields(rows: Sequence[dict[str, object]]) -> list[str]:
    """The columns of a run's ``summary.csv``: :data:`SUMMARY_FIELDS` less the :data:`OPTIONAL_FIELDS` blank in every row."""
    return [name for name in SUMMARY_FIELDS if name not in OPTIONAL_FIELDS or any(row[name] != "" for row in rows)]


def write_summary(path: Path, rows: Sequence[SummaryRow]) -> None:
    """Write ``summary.csv`` as UTF-8 (to a hidden file first, then renamed, so it is never half-written).

    A file name that is not valid UTF-8 is written with its other bytes as ``\\xNN`` (:func:`~app.workflows.output_folder.utf8_name`).
    A ``percentile_<map>`` column that would be blank for the whole run is left out (:func:`summary_fields`).
    """
    values = [row.csv_row() for row in rows]
    fields = summary_fields(values)
    staging = path.with_name(f".{path.name}.partial")
    try:
        with staging.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            for value in values:
                writer.writerow(value)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
