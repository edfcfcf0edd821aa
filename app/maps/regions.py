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


def _row(
    kind: Literal["class", "component"],
    cls: int,
    name: str,
    pixels: tuple[np.ndarray, ...],
    total: int,
    maps: Mapping[str, np.ndarray],
    component: int | None,
    replicates: Mapping[str, np.ndarray] | None,
    samples: int,
) -> Region:
    ys, xs = pixels
    replicate_means = {key: values[:, ys, xs].mean(axis=1, dtype=np.float64) for key, values in replicates.items()} if replicates is not None else None
    return Region(
        kind=kind,
        class_index=cls,
        class_name=name,
        component=component,
        pixels=int(ys.size),
        share=float(ys.size / total),
        bbox=[int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
        means={key: float(np.mean(values[ys, xs], dtype=np.float64)) for key, values in maps.items()},
        errors=mean_errors(maps, replicate_means, samples),
    )


def region_table(
    prediction: np.ndarray,
    maps: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    min_area: int = MIN_AREA,
    replicates: Mapping[str, np.ndarray] | None = None,
    samples: int = 0,
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

    Returns:
        Class rows first, in class order; components follow, largest first within each class.
    """
    if min_area < 1:
        raise ValueError(f"min_area must be >= 1, got {min_area}")
    pred = np.asarray(prediction)
    total = pred.size
    class_rows: list[Region] = []
    comp_rows: list[Region] = []
    for cls in np.unique(pred):
        c = int(cls)
        name = class_names[c] if c < len(class_names) else str(c)
        mask = pred == cls
        class_rows.append(_row("class", c, name, np.nonzero(mask), total, maps, None, replicates, samples))
        labels, count = ndimage.label(mask, structure=_EIGHT)
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        boxes = ndimage.find_objects(labels)
        order = [k for k in np.argsort(-sizes, kind="stable") if sizes[k] >= min_area]
        for rank, k in enumerate(order, start=1):
            sy, sx = boxes[k]
            ys, xs = np.nonzero(labels[sy, sx] == k + 1)
            comp_rows.append(_row("component", c, name, (ys + sy.start, xs + sx.start), total, maps, rank, replicates, samples))
    return class_rows + comp_rows
