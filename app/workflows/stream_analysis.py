"""A full-resolution analysis streamed band by band to ``maps.zarr``: memory bounded by one tile and one band.

The sliding windows (:func:`app.engine.sliding_window.blended_bands`) finish the image a band of rows at a time; each
band goes to the store (:class:`app.io.zarr_store.MapStore`) and into the image-wide statistics
(:class:`app.maps.band_summary.BandSummary`: map means, the region table's class rows, previews), and is dropped. The
pixels come from a :class:`~app.engine.sliding_window.RegionReader` (a tiled TIFF read tile by tile) or a decoded array.
What is held besides the network's working memory (the analyser's budget) is one band of maps and the previews:
about ``40 · W`` bytes a band row and ``4 · 8`` bytes a preview pixel, whatever the image's height.

The result is an :class:`~app.engine.analysis.Analysis` whose ``maps``, ``prediction`` and ``image`` (for a reader:
``f × f`` box averages read a block at a time) are the previews (so PNGs are drawn from them as from any
analysis) and whose :attr:`~app.engine.analysis.Analysis.stored` gives the full-resolution means and class shares.
Class rows and the connected components of at least ``min_area`` pixels (:mod:`app.maps.band_components`) are exact.
Sampled means carry the tile bound as their MC error (``error_method = "tile_bound"``), as every tiled analysis does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app.defaults import STREAM_PIXELS
from app.engine.analysis import Analysis, StoredMaps
from app.engine.cancel import CancelToken
from app.engine.passes import pass_plan, plan_cost
from app.engine.sampling import SamplingOptions
from app.engine.sliding_window import Band, RegionReader, TileGrid, blended_bands, image_size, plan_grid
from app.engine.strips import STRIP_COLUMNS, plan_strips
from app.engine.tile_budget import choose_tile
from app.io.npz import label_dtype
from app.io.zarr_store import CHUNK_COLUMNS, MapStore
from app.maps.band_components import StreamedComponents
from app.maps.mc_error import mean_errors
from app.maps.registry import MAP_NAMES, map_ranges
from app.maps.strip_summary import StripedSummary
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.stream_sets import StreamedSets

__all__ = ["PREVIEW_SIDE", "STREAM_PIXELS", "analyze_to_store", "stream_grid"]

PREVIEW_SIDE = 2048
PREVIEW_BLOCK = 512
CODEC = "blosc zstd level 5, byte shuffle"
_CLASS_ARRAYS = ("probs", "mean_probs", "class_variance")


def stream_grid(analyzer: Analyzer, height: int, width: int, request: AnalysisRequest) -> tuple[TileGrid, int]:
    """The sliding windows of a streamed ``height × width`` analysis (one tile when the image fits the budget whole) and
    the memory budget left for each tile's MC chunks."""
    net = analyzer.bundle.net
    plan = pass_plan(net, request.tta, request.samples, request.seed)
    cost = plan_cost(analyzer.cost, plan)
    stride = net.stride
    hp, wp = height + (-height) % stride, width + (-width) % stride
    tile = choose_tile(hp, wp, cost, analyzer.memory_budget, stride, band_columns=STRIP_COLUMNS) or (hp, wp)
    grid = plan_grid(hp, wp, tile, stride)
    return grid, cost.chunk_budget(analyzer.memory_budget, grid.tile, min(wp, STRIP_COLUMNS + 2 * grid.tile[1]))


def _band(band: Band, save: Sequence[str], sets: StreamedSets, classes: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A band's host arrays, its blocks finalised one at a time into them: maps and labels ``(rows, right - left)`` (labels in
    :func:`~app.io.npz.label_dtype` of ``classes``), class arrays ``(C, rows, right - left)``; and the set sizes by store name."""
    labels = label_dtype(classes)
    arrays: dict[str, np.ndarray] = {}
    sizes: dict[str, np.ndarray] = {}
    for left, part in band.blocks():
        scalars = part.scalar_maps()
        tensors = {name: scalars[name] if name in MAP_NAMES else getattr(part, name) for name in ("prediction", *MAP_NAMES, *save)}
        block = {name: t[0].cpu().numpy() for name, t in tensors.items()}
        block["prediction"] = block["prediction"].astype(labels)
        for out, values in ((arrays, block), (sizes, sets.block_sizes(part))):
            for name, value in values.items():
                if name not in out:
                    out[name] = np.empty((*value.shape[:-1], band.right - band.left), dtype=value.dtype)
                out[name][..., left - band.left : left - band.left + value.shape[-1]] = value
        del part, scalars, tensors, block
    return arrays, sizes


def _preview_image(source: np.ndarray | RegionReader, shape: tuple[int, ...], factor: int) -> np.ndarray:
    """The input at the previews' ``shape``: an array resized bilinearly (as the page's input is drawn); a reader's pixels
    averaged over ``factor × factor`` boxes, read a square block at a time (never a whole row of the image)."""
    if isinstance(source, np.ndarray):
        if source.shape[:2] == shape:
            return source
        image = Image.fromarray(np.ascontiguousarray(source)).resize((shape[1], shape[0]), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(image)
    out = np.empty((shape[0], shape[1], 3), dtype=np.uint8)
    rows = factor * max(1, PREVIEW_BLOCK // factor)
    for top in range(0, source.height, rows):
        for left in range(0, source.width, rows):
            block = Image.fromarray(source.read(top, left, min(rows, source.height - top), min(rows, source.width - left)))
            small = np.asarray(block.reduce(factor) if factor > 1 else block)[: shape[0] - top // factor, : shape[1] - left // factor]
            out[top // factor : top // factor + small.shape[0], left // factor : left // factor + small.shape[1]] = small
    return out


def analyze_to_store(
    analyzer: Analyzer,
    source: np.ndarray | RegionReader,
    request: AnalysisRequest,
    store_path: Path,
    save: Sequence[str] = (),
    *,
    cancel: CancelToken | None = None,
    preview_side: int = PREVIEW_SIDE,
    strip_columns: int | None = STRIP_COLUMNS,
) -> Analysis:
    """Analyse every pixel of ``source`` in sliding windows, writing the maps to a ``maps.zarr`` at ``store_path``.

    Args:
        analyzer: The model's analyser (its memory budget sizes the tiles).
        source: ``(H, W, 3)`` uint8 RGB, or a reader of an image too large to decode whole.
        request: Samples, seed, temperature and augmentation (its ``resolution`` is taken as ``"full"``).
        store_path: Where the store goes (replaced if it exists).
        save: The ``(C, H, W)`` arrays the store keeps as well (:func:`app.io.npz.parse_save`).
        cancel: Checked between tiles and sample chunks.
        preview_side: The previews' longest side at most.
        strip_columns: The widest column strip (:mod:`app.engine.strips`; ``None``: the whole width at once).

    Returns:
        The analysis, its maps the previews (:attr:`~app.engine.analysis.Analysis.stored` says where the full maps are).

    Raises:
        app.engine.cancel.AnalysisCancelled: ``cancel`` was cancelled (the store is left incomplete: no ``complete`` mark).
    """
    bundle, card = analyzer.bundle, analyzer.bundle.card
    height, width = image_size(source)
    plan = pass_plan(bundle.net, request.tta, request.samples, request.seed)
    temperature = card.temperature if request.calibrated else 1.0
    grid, chunk_budget = stream_grid(analyzer, height, width, request)
    options = SamplingOptions(
        samples=request.samples,
        seed=request.seed,
        temperature=temperature,
        chunk_size=request.chunk_size,
        memory_budget=chunk_budget,
        cancel=cancel,
        tta=request.tta,
        density=bundle.density,
        estimator="sampled",
    )
    classes = len(card.classes)
    band_rows = grid.tile[0] - grid.overlap[0] if len(grid.tops) > 1 else grid.tile[0]
    sets = StreamedSets(card.conformal_sets)
    store = MapStore(store_path, (height, width), classes, band_rows, save, sets.store_names)
    summary = StripedSummary(height, width, bundle.class_names, [*MAP_NAMES, *sets.summary_names], preview_side, [*MAP_NAMES, *sets.preview_names])
    strips = plan_strips(grid.lefts, grid.tile[1], width, strip_columns, math.lcm(summary.factor, CHUNK_COLUMNS))
    strip_summary = None
    sure = sets.sure_name
    components = StreamedComponents(height, width, [*MAP_NAMES, *([sure] if sure else [])], request.min_area)
    squares = 0.0
    bound: dict[str, float] = {}
    start = time.perf_counter()
    norm = card.normalization
    for band in blended_bands(bundle.net, source, norm.mean, norm.std, classes, grid, options, bound, strips):
        if band.top == 0:
            strip_summary = summary.strip(band.left, band.right)
        assert strip_summary is not None
        arrays, sizes = _band(band, save, sets, classes)
        store.write_band(band.top, {**arrays, **sizes}, band.left)
        extra = sets.summary_maps(sizes)
        strip_summary.add(band.top, arrays["prediction"], {**{name: arrays[name] for name in MAP_NAMES}, **extra})
        components.add(band.top, band.left, arrays["prediction"], [arrays[name] for name in MAP_NAMES] + ([extra[sure]] if sure else []))
        squares += float(np.square(arrays["feature_distance"], dtype=np.float64).sum())
        del band, arrays, sizes, extra
    if analyzer.device.type == "cuda":
        torch.cuda.synchronize(analyzer.device)
    inference = time.perf_counter() - start
    start = time.perf_counter()
    preview_labels, previews = summary.previews()
    preview_maps = {name: previews[name] for name in MAP_NAMES}
    store.write_previews(summary.factor, {"prediction": preview_labels, **preview_maps})
    all_means = summary.means()
    means = {name: all_means[name] for name in MAP_NAMES}
    random_draws = plan.draws if plan.random else 0
    prediction_sets, regions = sets.finish(all_means, previews, summary.class_regions(), plan.method, request.samples, temperature)
    regions += components.rows(bundle.class_names, sure=sure)
    shares = [0.0] * classes
    for region in regions:
        if region.kind == "class":
            shares[region.class_index] = region.share
    distance_std = math.sqrt(max(squares / (height * width) - means["feature_distance"] ** 2, 0.0))
    verdicts, image_check = analyzer.image_verdicts(means, distance_std, replace(request, resolution="full"))
    store.finish(
        {
            "model": card.name,
            "classes": [c.name for c in card.classes],
            "size": [height, width],
            "samples": request.samples,
            "seed": request.seed,
            "preview_factor": summary.factor,
            "ranges": {name: list(r) for name, r in map_ranges(classes).items()},
        }
    )
    return Analysis(
        image=_preview_image(source, preview_labels.shape, summary.factor),
        prediction=preview_labels.astype(np.int64),
        maps={name: preview_maps[name].astype(np.float32, copy=False) for name in MAP_NAMES},
        class_arrays=None,
        num_classes=classes,
        ranges=map_ranges(classes),
        regions=regions,
        samples=request.samples,
        seed=request.seed,
        temperature=temperature,
        calibrated=request.calibrated,
        device=str(analyzer.device),
        dropout_added_at_inference=not card.dropout.trained_with_dropout,
        timings={"inference": inference, "regions": time.perf_counter() - start},
        input_size=(height, width),
        resolution="full",
        image_ood=verdicts,
        mean_errors=mean_errors(MAP_NAMES, None, random_draws, bound or None),
        error_method="exact" if random_draws == 0 else "tile_bound" if bound else "unavailable",
        tta=request.tta,
        passes=plan.passes,
        method=plan.method,
        unavailable=analyzer.unavailable,
        image_check=image_check,
        sets=prediction_sets,
        stored=StoredMaps(
            store_path,
            (height, width),
            summary.factor,
            means,
            shares,
            {
                "store": store_path.name,
                "dtypes": {name: str(dtype) for name, dtype in store.dtypes.items()},
                "chunks": [min(band_rows, height), min(CHUNK_COLUMNS, width)],
                "codec": CODEC,
                "preview_factor": summary.factor,
            },
        ),
    )
