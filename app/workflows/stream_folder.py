"""Which inputs of ``analyze`` stream to ``maps.zarr``, and how such an input's folder is written.

An analysis at full resolution streams (:mod:`app.workflows.stream_analysis`) when ``--format zarr`` asks for it, or
with ``--format auto`` (the default) when the image has more than :data:`~app.workflows.stream_analysis.STREAM_PIXELS`
pixels: its maps go to ``maps.zarr`` and its PNGs are previews of at most 2048 pixels a side. A tiled TIFF or BigTIFF
larger than ``--max-pixels`` is read tile by tile (:mod:`app.io.pixel_source`) up to ``--max-tiled-pixels``: streamed
at full resolution, reduced band by band to the working size otherwise. Everything else is decoded whole and
analysed in memory into ``maps.npz``, as before.

The folder is written under a hidden staging name (the store straight to disk, never whole in memory) and moved into
place once complete; a failure or a cancel leaves nothing presented as complete.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from app.defaults import MAX_TILED_PIXELS
from app.engine.analysis import Analysis
from app.engine.cancel import CancelToken, checkpoint
from app.engine.free_memory import release_free_memory
from app.engine.sliding_window import RegionReader
from app.io.encoding import summarise
from app.io.legend import legend_pngs
from app.io.zarr_store import STORE_NAME
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.output_folder import install_folder, utf8_name
from app.workflows.outputs import FILE_DEFAULT, Outputs
from app.workflows.stream_analysis import STREAM_PIXELS, analyze_to_store

__all__ = ["MAX_TILED_PIXELS", "STORE_FORMATS", "StoreFormat", "reduced_rgb", "store_image", "streams"]

StoreFormat = Literal["auto", "npz", "zarr"]
STORE_FORMATS: tuple[StoreFormat, ...] = ("auto", "npz", "zarr")
_BAND_ROWS = 256


def streams(store_format: StoreFormat, request: AnalysisRequest, pixels: int) -> bool:
    """Whether an analysis of ``pixels`` pixels goes to ``maps.zarr`` (full resolution only)."""
    if request.resolution != "full":
        return False
    return store_format == "zarr" or (store_format == "auto" and pixels > STREAM_PIXELS)


def reduced_rgb(source: RegionReader, shape: tuple[int, int], cancel: CancelToken | None = None) -> np.ndarray:
    """``source`` reduced to ``shape = (h, w)``: bands of rows averaged over ``f × f`` blocks (``f`` the largest integer
    factor that keeps at least ``shape``), then resized with Lanczos as the working-size path resizes; memory is a band
    and the ``f``-reduced image."""
    height, width = source.height, source.width
    f = max(1, min(height // shape[0], width // shape[1]))
    rows_out, cols_out = height // f, width // f
    reduced = np.empty((rows_out, cols_out, 3), dtype=np.uint8)
    step = max(1, _BAND_ROWS // f)
    for start in range(0, rows_out, step):
        checkpoint(cancel)
        count = min(step, rows_out - start)
        band = source.read(start * f, 0, count * f, cols_out * f).astype(np.float32)
        blocks = band.reshape(count, f, cols_out, f, 3).mean(axis=(1, 3))
        reduced[start : start + count] = np.clip(np.rint(blocks), 0, 255).astype(np.uint8)
    if reduced.shape[:2] == shape:
        return reduced
    return np.asarray(Image.fromarray(reduced).resize((shape[1], shape[0]), Image.Resampling.LANCZOS))


def store_image(
    analyzer: Analyzer,
    source: np.ndarray | RegionReader,
    source_name: str,
    name: str,
    request: AnalysisRequest,
    out: Path,
    outputs: Outputs = FILE_DEFAULT,
    cancel: CancelToken | None = None,
) -> tuple[dict[str, float], Analysis]:
    """Analyse ``source`` at full resolution into ``out/<name>/`` (``maps.zarr``, preview PNGs, ``analysis.json``: those
    ``outputs`` asks for, the store with ``outputs.arrays`` added).

    The store is written as the analysis streams, into the staging folder; without ``outputs.npz`` it is dropped there.

    Returns:
        The analysis's map means and the :class:`~app.engine.analysis.Analysis` (its maps the previews).

    Raises:
        app.engine.cancel.AnalysisCancelled: ``cancel`` was cancelled (nothing is installed).
        app.io.pixel_source.TiledImageError: a tile could not be read (nothing is installed).
        OSError: the folder could not be written (nothing is installed).
    """
    card = analyzer.bundle.card
    staging = out / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        started = time.perf_counter()
        analysis = analyze_to_store(analyzer, source, request, staging / STORE_NAME, outputs.arrays, cancel=cancel)
        release_free_memory()
        if outputs.png:
            for key, png in legend_pngs(analysis, card).items():
                (staging / f"{key}.png").write_bytes(png)
        info = summarise(analysis, card)
        if outputs.npz:
            info.zarr = dict(analysis.stored.layout) if analysis.stored is not None else {}
        else:
            shutil.rmtree(staging / STORE_NAME)
        if outputs.json:
            info.timings["total"] = round(time.perf_counter() - started, 6)
            info.source = utf8_name(source_name)
            info.threads = torch.get_num_threads()
            (staging / "analysis.json").write_text(json.dumps(info.to_json(), indent=2), encoding="utf-8")
        install_folder(staging, out / name, superseded=("maps.npz",))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {k: m.mean for k, m in info.maps.items()}, analysis
