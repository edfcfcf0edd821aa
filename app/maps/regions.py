"""The region table: per predicted class and per connected component, the area
and the mean of every map over its pixels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage

from app.defaults import MIN_AREA
from app.maps.mc_error import mean_errors

__all__ = ["Region", "region_table"]

_EIGHT = np.ones((3, 3), dtype=bool)
_BAND_PIXELS = 1 << 20


@dataclass(frozen=True)
class Region:
    """One row of the region table.

    Attributes:
        kind: ``"class"`` (all pixels of a class) or ``"component"`` (one 8-connected component).
        class_index: The predicted class.
        class_name: Its name.
        component: 1-based rank of the component within its class (largest first); ``None`` for class rows.
        pixels: Area in pixels.
        share: Area as a share of the image.
        bbox: ``[x0, y0, x1, y1)``.
        means: Map name → mean of the map over the region's pixels.
        errors: Map name → MC standard error of that mean (:func:`app.maps.mc_error.mean_errors`; ``None``: not estimable).
        sure_share: Share of the region's pixels whose conformal prediction set has one class at the shown level
            (:class:`app.engine.analysis.PredictionSets`); ``None`` without sets.
    """

    kind: Literal["class", "component"]
    class_index: int
    class_name: str
    component: int | None
    pixels: int
    share: float
    bbox: list[int]
    means: dict[str, float]
    errors: dict[str, float | None] = field(default_factory=dict)
    sure_share: float | None = None


def _row(
    kind: Literal["class", "component"],
    cls: int,
    name: str,
    box: tuple[slice, slice],
    inside: np.ndarray,
    total: int,
    maps: Mapping[str, np.ndarray],
    component: int | None,
    replicates: Mapping[str, np.ndarray] | None,
    samples: int,
    sure: np.ndarray | None = None,
) -> Region:
    """The row of the pixels ``inside`` (a boolean mask) of the box ``box`` of the image.

    The region's values are gathered by the mask, in row-major order (as ``np.nonzero`` would list them), one map at a
    time: no index arrays (16 bytes a pixel) and no float64 copies of a map.
    """
    sy, sx = box
    ys = np.flatnonzero(inside.any(axis=1))
    xs = np.flatnonzero(inside.any(axis=0))
    y0, x0 = sy.start or 0, sx.start or 0
    pixels = int(np.count_nonzero(inside))
    replicate_means = (
        {key: values[:, sy, sx][:, inside].mean(axis=1, dtype=np.float64) for key, values in replicates.items()} if replicates is not None else None
    )
    return Region(
        kind=kind,
        class_index=cls,
        class_name=name,
        component=component,
        pixels=pixels,
        share=float(pixels / total),
        bbox=[x0 + int(xs[0]), y0 + int(ys[0]), x0 + int(xs[-1]) + 1, y0 + int(ys[-1]) + 1],
        means={key: float(np.mean(values[sy, sx][inside], dtype=np.float64)) for key, values in maps.items()},
        errors=mean_errors(maps, replicate_means, samples),
        sure_share=None if sure is None else float(np.count_nonzero(sure[sy, sx][inside]) / pixels),
    )


def region_table(
    prediction: np.ndarray,
    maps: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    min_area: int = MIN_AREA,
    replicates: Mapping[str, np.ndarray] | None = None,
    samples: int = 0,
    sure: np.ndarray | None = None,
) -> list[Region]:
    """Summarise maps over each predicted class and each large connected component.

    Args:
        prediction: ``(H, W)`` class indices.
        maps: Name → ``(H, W)`` float map.
        class_names: Name of each class index.
        min_area: Components (8-connected) smaller than this many pixels are left out
            of the per-component rows (they still count in their class row).
        replicates: Sampled map name → ``(G, H, W)`` leave-one-group-out replicates, for the MC errors of the means.
        samples: ``T`` of the maps (0: every map is exact).
        sure: ``(H, W)`` bool, the pixels whose prediction set has one class: each row's ``sure_share``.

    Returns:
        Class rows first, in class order; components follow, largest first within each class.
    """
    if min_area < 1:
        raise ValueError(f"min_area must be >= 1, got {min_area}")
    pred = np.asarray(prediction)
    total = pred.size
    whole = (slice(None), slice(None))
    class_rows: list[Region] = []
    comp_rows: list[Region] = []
    for c in _classes(pred):
        name = class_names[c] if c < len(class_names) else str(c)
        mask = pred == c
        class_rows.append(_row("class", c, name, whole, mask, total, maps, None, replicates, samples, sure))
        comp_rows += _component_rows(c, name, mask, total, maps, min_area, replicates, samples, sure)
    return class_rows + comp_rows


def _component_rows(
    c: int,
    name: str,
    mask: np.ndarray,
    total: int,
    maps: Mapping[str, np.ndarray],
    min_area: int,
    replicates: Mapping[str, np.ndarray] | None,
    samples: int,
    sure: np.ndarray | None = None,
) -> list[Region]:
    """The rows of the 8-connected components of ``mask`` of at least ``min_area`` pixels, largest first (one class's
    label image alive at a time: 4 bytes a pixel)."""
    labels, count = ndimage.label(mask, structure=_EIGHT)
    sizes = _label_sizes(labels, count)
    boxes = ndimage.find_objects(labels)
    order = [k for k in np.argsort(-sizes, kind="stable") if sizes[k] >= min_area]
    rows = []
    for rank, k in enumerate(order, start=1):
        box = boxes[k]
        rows.append(_row("component", c, name, box, labels[box] == k + 1, total, maps, rank, replicates, samples, sure))
    return rows


def _label_sizes(labels: np.ndarray, count: int) -> np.ndarray:
    """Pixels of labels ``1..count`` of an ``(H, W)`` label image, counted in bands of rows (``np.bincount`` casts its
    input to ``intp``: the whole int32 image at once would be a copy of 8 bytes a pixel)."""
    sizes = np.zeros(count + 1, dtype=np.intp)
    rows = max(1, _BAND_PIXELS // max(1, labels.shape[1]))
    for top in range(0, labels.shape[0], rows):
        sizes += np.bincount(labels[top : top + rows].ravel(), minlength=count + 1)
    return sizes[1:]


def _classes(pred: np.ndarray) -> list[int]:
    """The classes present, ascending (``np.unique`` without its sorted copy of the image, for non-negative integer labels)."""
    if pred.size and np.issubdtype(pred.dtype, np.integer) and pred.min() >= 0:
        return [int(c) for c in np.flatnonzero(np.bincount(pred.ravel()))]
    return [int(c) for c in np.unique(pred)]
