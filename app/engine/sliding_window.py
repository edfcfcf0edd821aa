"""Sliding-window MC-dropout analysis of images too large for one pass, in bounded memory.

Like MONAI's ``sliding_window_inference``: the stride-padded image is cut into tiles of the size
:func:`~app.engine.tile_budget.choose_tile` picks from the memory budget, overlapping by a quarter of
the tile but at most :data:`MAX_OVERLAP` pixels (the seam error depends on the pixels of context a tile's
edge has, not on the tile's size: ``benchmarks/tile_overlap.py``), rounded to a multiple of the network
stride, so every tile sits on the stride grid; the last tile of each row and column is aligned with the image's end. Each tile is analysed by
:func:`~app.engine.sampling.run_mc` with the request's seed (dropout masks depend on
``(seed, sample, site)`` only), and its statistics are blended with Gaussian weights
(:mod:`app.engine.blending`, ``σ = tile/8``). Ensemble members and test-time augmentations run per tile
(:func:`~app.engine.passes.run_passes`): flips and photometric jitter of a tile are exactly those of the image;
a scaled pass resizes the tile (its borders see the tile's edge instead of the neighbouring pixels).

No replicate maps are kept for a tiled image (they would cost ``G`` planes per map at full size): the MC
error of an image mean is bounded by the largest jackknife error of any tile's mean (the image mean is a
weighted mixture of the tiles', whose errors, sharing masks, are positively correlated); region means
get no error. A tile's replicate maps are made on every :data:`REPLICATE_STEP`-th row and column only: their means
are all the bound uses, and the replicates were a third of what sampling added to a tile.

Tiles run row by row. A row of tiles covers a band of rows; once the row is done, the band's rows
that no later tile touches are finalised into the output maps (in blocks one tile wide) and dropped,
so working memory is one tile's analysis plus one band's accumulators, whatever the image's height; a streamed
analysis also cuts a wide image into column strips (:mod:`app.engine.strips`), so that the band is no wider than a strip.
The outputs themselves (the analysis's maps, ``(H, W)``, and unless ``class_arrays=False`` the ``(C, H, W)``
probabilities and variances) are allocated on the host at the input's size: 32 bytes a pixel for the maps and
labels, ``12·C`` more for the class arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol

import numpy as np
import torch

from app.engine.blending import BandBlender, BlendedStatistics, finalize_blend, gaussian_weights
from app.engine.cancel import checkpoint, progress_steps
from app.engine.geometry import pad_to_stride, to_tensor
from app.engine.network import SegmentationNet
from app.engine.options import SamplingOptions
from app.engine.passes import pass_plan, run_passes
from app.engine.strips import Strip
from app.engine.tile_budget import TileCost, choose_tile
from app.maps.mc_error import jackknife_se
from app.maps.moments import UncertaintyMaps
from app.metrics.risk_control import set_sizes

__all__ = [
    "MAX_OVERLAP",
    "OVERLAP",
    "REPLICATE_STEP",
    "Band",
    "RegionReader",
    "TileGrid",
    "analyse_rgb",
    "blended_bands",
    "image_size",
    "plan_grid",
    "sliding_window_mc",
    "tile_offsets",
    "tile_pixels",
]

OVERLAP = 0.25
MAX_OVERLAP = 96
REPLICATE_STEP = 2


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of a padded image go.

    Attributes:
        tile: ``(th, tw)``.
        overlap: ``(rows, columns)`` shared by neighbouring tiles.
        tops: First row of each row of tiles.
        lefts: First column of each column of tiles.
    """

    tile: tuple[int, int]
    overlap: tuple[int, int]
    tops: tuple[int, ...]
    lefts: tuple[int, ...]


def _overlap(tile: int, length: int, stride: int) -> int:
    if tile >= length:
        return 0
    return min(tile - stride, max(stride, int(min(OVERLAP * tile, MAX_OVERLAP) / stride + 0.5) * stride))


def tile_offsets(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Starts of tiles of ``tile`` covering ``[0, length)``, stepping ``tile - overlap``, the last ending at ``length``."""
    if tile >= length:
        return (0,)
    starts = list(range(0, length - tile, tile - overlap))
    return (*starts, length - tile)


def plan_grid(height: int, width: int, tile: tuple[int, int], stride: int, overlap_px: int | None = None) -> TileGrid:
    """The :class:`TileGrid` of a padded ``height × width`` image with tiles ``tile`` (multiples of ``stride``).

    ``overlap_px``: the overlap in pixels (rounded to the stride, at least one stride); ``None``: the default rule.
    """
    th, tw = min(tile[0], height), min(tile[1], width)
    if overlap_px is not None:
        step = max(stride, int(overlap_px / stride + 0.5) * stride)
        overlap = tuple(0 if t >= n else min(t - stride, step) for t, n in ((th, height), (tw, width)))
        return TileGrid((th, tw), (overlap[0], overlap[1]), tile_offsets(height, th, overlap[0]), tile_offsets(width, tw, overlap[1]))
    overlap = (_overlap(th, height, stride), _overlap(tw, width, stride))
    return TileGrid((th, tw), overlap, tile_offsets(height, th, overlap[0]), tile_offsets(width, tw, overlap[1]))


class RegionReader(Protocol):
    """Pixels read a region at a time (e.g. :class:`app.io.pixel_source.TiledTiffSource`): an image never decoded whole."""

    @property
    def height(self) -> int:
        """Rows of the image."""
        ...

    @property
    def width(self) -> int:
        """Columns of the image."""
        ...

    def read(self, top: int, left: int, rows: int, cols: int) -> np.ndarray:
        """``(rows, cols, 3)`` uint8 RGB of a region inside the image."""
        ...


def image_size(rgb: np.ndarray | RegionReader) -> tuple[int, int]:
    """``(H, W)`` of an array or a :class:`RegionReader`."""
    if isinstance(rgb, np.ndarray):
        return int(rgb.shape[0]), int(rgb.shape[1])
    return rgb.height, rgb.width


def _source_index(start: int, count: int, length: int, mode: str) -> np.ndarray | slice:
    if start + count <= length:
        return slice(start, start + count)
    index = np.arange(start, start + count)
    if mode == "reflect":
        return np.where(index < length, index, 2 * (length - 1) - index)
    return np.minimum(index, length - 1)


def tile_pixels(rgb: np.ndarray | RegionReader, top: int, left: int, tile: tuple[int, int], stride: int) -> np.ndarray:
    """The ``tile`` of ``rgb`` at ``(top, left)`` of the image as :func:`~app.engine.geometry.pad_to_stride` pads it.

    Rows and columns past the image's end are taken by reflection (edge replication when the image
    is smaller than its padding), as ``pad_to_stride`` does, so no padded copy of the image is made. A
    :class:`RegionReader` is asked for the one region the tile's pixels come from.
    """
    h, w = image_size(rgb)
    mode = "reflect" if (-h) % stride < h and (-w) % stride < w else "replicate"
    rows = _source_index(top, tile[0], h, mode)
    cols = _source_index(left, tile[1], w, mode)
    if not isinstance(rgb, np.ndarray):
        rows_index = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
        cols_index = np.arange(cols.start, cols.stop) if isinstance(cols, slice) else cols
        r0, c0 = int(rows_index.min()), int(cols_index.min())
        block = rgb.read(r0, c0, int(rows_index.max()) + 1 - r0, int(cols_index.max()) + 1 - c0)
        if isinstance(rows, slice) and isinstance(cols, slice):
            return block
        selected: np.ndarray = block[(rows_index - r0)[:, None], (cols_index - c0)[None, :]]
        return selected
    if isinstance(rows, slice) and isinstance(cols, slice):
        return rgb[rows, cols]
    rows_index = np.arange(h)[rows] if isinstance(rows, slice) else rows
    cols_index = np.arange(w)[cols] if isinstance(cols, slice) else cols
    pixels: np.ndarray = rgb[rows_index[:, None], cols_index[None, :]]
    return pixels


_MAP_NAMES = ("prediction", "confidence", "entropy", "expected_entropy", "mutual_information", "variance", "feature_distance")
_CLASS_NAMES = ("probs", "mean_probs", "class_variance")


def _empty_maps(classes: int, size: tuple[int, int], samples: int, density: bool = False, class_arrays: bool = True) -> UncertaintyMaps:
    """The host outputs of a tiled analysis; without ``class_arrays`` the ``(C, H, W)`` ones are ``(1, C, 0, 0)`` placeholders."""
    h, w = size

    def plane() -> torch.Tensor:
        return torch.empty(1, h, w)

    probs = torch.empty(1, classes, h, w) if class_arrays else torch.empty(1, classes, 0, 0)
    return UncertaintyMaps(
        prediction=torch.empty(1, h, w, dtype=torch.int64),
        confidence=plane(),
        entropy=plane(),
        expected_entropy=plane(),
        mutual_information=plane(),
        variance=plane(),
        probs=probs,
        mean_probs=torch.empty_like(probs) if samples else probs,
        class_variance=torch.empty_like(probs),
        samples=samples,
        feature_distance=plane() if density else None,
    )


def _write(out: UncertaintyMaps, part: UncertaintyMaps, top: int, left: int, class_arrays: bool = True, thresholds: Sequence[float] = ()) -> None:
    h, w = out.prediction.shape[-2:]
    rows = min(part.prediction.shape[-2], h - top)
    cols = min(part.prediction.shape[-1], w - left)
    if out.set_sizes is not None:
        sizes = torch.stack([set_sizes(part.mean_probs, t) for t in thresholds], dim=1)
        out.set_sizes[..., top : top + rows, left : left + cols].copy_(sizes[..., :rows, :cols])
    for name in (*_MAP_NAMES, *(_CLASS_NAMES if class_arrays else ())):
        target, source = getattr(out, name), getattr(part, name)
        if target is not None and source is not None and (name != "mean_probs" or target is not out.probs):
            target[..., top : top + rows, left : left + cols].copy_(source[..., :rows, :cols])


class Band(NamedTuple):
    """A finished band of one strip: ``rows`` output rows from ``top`` (none past the image's), columns ``[left, right)``.

    :meth:`blocks` finalises it block by block, so no more than one block's maps exist at a time; the blocks read the
    blender's rows, valid until the band generator resumes.
    """

    top: int
    left: int
    right: int
    rows: int
    finalize: Callable[[int], UncertaintyMaps]
    width: int

    def blocks(self) -> Iterator[tuple[int, UncertaintyMaps]]:
        """``(left, maps)`` of each block at most one tile wide, left to right, each made when it is reached."""
        for a in range(self.left, self.right, self.width):
            yield a, self.finalize(a)


def blended_bands(
    net: SegmentationNet,
    rgb: np.ndarray | RegionReader,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    classes: int,
    grid: TileGrid,
    options: SamplingOptions,
    bound: dict[str, float],
    strips: Sequence[Strip] | None = None,
) -> Iterator[Band]:
    """Analyse ``rgb`` tile by tile, yielding each finished band of rows of each column strip (:mod:`app.engine.strips`).

    Strips come left to right, each band by band top to bottom; without ``strips`` the image is one strip. A band is
    the rows of a row of tiles that no later tile touches. ``bound`` receives, per sampled map, the largest jackknife
    error of any tile's mean (the image mean's MC error bound).
    """
    device = next(iter(net.parameters())).device
    options = replace(options, replicate_step=REPLICATE_STEP)
    th, tw = grid.tile
    weights = gaussian_weights(th, tw, device)
    height, width = image_size(rgb)
    draws = pass_plan(net, options.tta, options.samples).draws
    strips = strips or [Strip(0, width, 0, len(grid.lefts) - 1)]
    tile_done = progress_steps(options.cancel, len(grid.tops) * sum(s.last - s.first + 1 for s in strips), "tile")
    for strip in strips:
        origin = grid.lefts[strip.first]
        lefts = grid.lefts[strip.first : strip.last + 1]
        blender = BandBlender(classes, th, lefts[-1] + tw - origin, device, options.density is not None, sampled=draws > 0)
        for row, top in enumerate(grid.tops):
            for left in lefts:
                checkpoint(options.cancel)
                x = to_tensor(tile_pixels(rgb, top, left, grid.tile, net.stride), mean, std).to(device)
                maps = run_passes(net, x, options, mean, std)
                for name, replicates in (maps.replicates or {}).items():
                    se = jackknife_se(replicates[0].mean(dim=(-2, -1), dtype=torch.float64).cpu().numpy())
                    bound[name] = max(bound.get(name, 0.0), se)
                distance = maps.feature_distance[0] if maps.feature_distance is not None else None
                statistics = BlendedStatistics(maps.probs[0], maps.mean_probs[0], maps.class_variance[0], maps.expected_entropy[0], distance)
                blender.add(0, left - origin, weights, statistics)
                del maps, x, statistics, distance  # nothing of a tile outlives it, nor of a band its yield
                tile_done()
            step = grid.tops[row + 1] - top if row + 1 < len(grid.tops) else th
            rows = min(step, height - top)

            def block(a: int, rows: int = rows, right: int = strip.right, origin: int = origin, blender: BandBlender = blender) -> UncertaintyMaps:
                return finalize_blend(blender.rows(rows, slice(a - origin, min(a + tw, right) - origin)), draws)

            yield Band(top, strip.left, strip.right, rows, block, tw)
            blender.advance(step)


def sliding_window_mc(
    net: SegmentationNet,
    rgb: np.ndarray | RegionReader,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    classes: int,
    grid: TileGrid,
    options: SamplingOptions,
    class_arrays: bool = True,
    set_thresholds: Sequence[float] = (),
) -> UncertaintyMaps:
    """Analyse ``(H, W, 3)`` uint8 RGB tile by tile and blend the tiles' MC statistics into maps held in memory.

    Args:
        net: The network (eval mode; its device is where tiles run).
        rgb: The image, or a :class:`RegionReader` of it.
        mean: Normalisation mean per channel.
        std: Normalisation std per channel.
        classes: ``C``.
        grid: Tiles of the stride-padded image (:func:`plan_grid`).
        options: Sampling options of every tile (same seed everywhere).
        class_arrays: Keep ``probs``, ``mean_probs`` and ``class_variance`` at the input's size; ``False``: each band's are
            finalised into the maps and dropped (the result's are ``(1, C, 0, 0)`` placeholders), the maps unchanged.
        set_thresholds: Without class arrays, also keep the conformal set sizes ``#{c : p̄_c >= t}`` at these thresholds
            (``set_sizes``, ``(1, L, H, W)`` uint8), made from each band's mean probabilities before they are dropped.

    Returns:
        Host (CPU) maps of batch 1 at the input's size: ``(1, H, W)``, probabilities ``(1, C, H, W)``.
    """
    draws = pass_plan(net, options.tta, options.samples).draws
    size = image_size(rgb)
    out = _empty_maps(classes, size, draws, options.density is not None, class_arrays)
    if set_thresholds and not class_arrays:
        out.set_sizes = torch.empty(1, len(set_thresholds), *size, dtype=torch.uint8)
    bound: dict[str, float] = {}
    for band in blended_bands(net, rgb, mean, std, classes, grid, options, bound):
        for left, part in band.blocks():
            _write(out, part, band.top, left, class_arrays, set_thresholds)
    out.error_bound = bound or None
    return out


def analyse_rgb(
    net: SegmentationNet,
    rgb: np.ndarray,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    classes: int,
    options: SamplingOptions,
    cost: TileCost,
    class_arrays: bool = True,
    set_thresholds: Sequence[float] = (),
) -> tuple[UncertaintyMaps, TileGrid | None]:
    """Analyse an image whole when it fits ``options.memory_budget``, else with sliding windows.

    The budget covers the whole analysis (see :mod:`app.engine.tile_budget`); MC chunks get what the
    fixed part leaves.

    Args:
        net: The network (eval mode).
        rgb: ``(H, W, 3)`` uint8 image.
        mean: Normalisation mean per channel.
        std: Normalisation std per channel.
        classes: ``C``.
        options: Sampling options; ``memory_budget`` is the budget of the whole analysis.
        cost: The network's :class:`~app.engine.tile_budget.TileCost`.
        class_arrays: Keep the ``(C, H, W)`` outputs of a tiled analysis (:func:`sliding_window_mc`); an image analysed
            whole has them within the budget either way.
        set_thresholds: Conformal set thresholds a tiled analysis without class arrays makes set sizes at.

    Returns:
        The maps (whole: of the padded image on the network's device; tiled: on the host, at the
        input's size; crop either to ``(H, W)``) and the tile grid (``None`` when analysed whole).
    """
    stride = net.stride
    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    hp, wp = h + (-h) % stride, w + (-w) % stride
    budget = options.memory_budget
    tile = choose_tile(hp, wp, cost, budget, stride)
    if tile is None:
        device = next(iter(net.parameters())).device
        padded, _ = pad_to_stride(to_tensor(rgb, mean, std).to(device), stride)
        return run_passes(net, padded, replace(options, memory_budget=cost.chunk_budget(budget, (hp, wp))), mean, std), None
    grid = plan_grid(hp, wp, tile, stride)
    tile_options = replace(options, memory_budget=cost.chunk_budget(budget, grid.tile, wp))
    return sliding_window_mc(net, rgb, mean, std, classes, grid, tile_options, class_arrays, set_thresholds), grid
