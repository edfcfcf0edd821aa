"""Column strips of a sliding-window analysis, so that its working memory does not grow with the image's width.

The blending accumulators of :mod:`app.engine.sliding_window` hold one band of rows; a band as wide as the image makes
them grow with its width (``(3C + 3)`` floats a pixel, about 300 MiB for a 11 520-pixel-wide slide). An image wider
than ``STRIP_COLUMNS`` is therefore finished in column strips, left to right, each top to bottom: a strip owns the
output columns ``[left, right)`` and runs every tile that touches them, so the one column of tiles straddling a
boundary runs in both strips (its statistics are the same both times: the masks depend on the seed, the sample and
the site only) and every output pixel is blended from the same tiles, in the same order, as without strips. Strip
boundaries are multiples of ``align`` (the store's chunk width and the previews' block size), so no chunk or preview
block is shared by two strips.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

__all__ = ["STRIP_COLUMNS", "Strip", "plan_strips"]

STRIP_COLUMNS = 4096


@dataclass(frozen=True)
class Strip:
    """Output columns ``[left, right)``, finished from the tile columns ``first..last`` (indices into the grid's lefts)."""

    left: int
    right: int
    first: int
    last: int


def plan_strips(lefts: tuple[int, ...], tile_width: int, width: int, columns: int | None = STRIP_COLUMNS, align: int = 1) -> list[Strip]:
    """The strips of a ``width``-column image whose tiles start at ``lefts``.

    Args:
        lefts: The tile columns' first columns (ascending; the last tile reaches ``width`` or past it).
        tile_width: The tiles' width.
        width: The output's columns (the image's, unpadded).
        columns: The widest strip wanted (``None``: one strip); strips are about equally wide.
        align: Every boundary between strips is a multiple of this.

    Returns:
        Strips covering ``[0, width)`` in order; one when the image is no wider than ``columns`` (or ``align``).
    """
    if width < 1 or tile_width < 1 or align < 1:
        raise ValueError(f"need a positive width, tile width and alignment, got {width}, {tile_width}, {align}")
    count = 1 if columns is None else max(1, math.ceil(width / columns))
    bounds = sorted({0, width, *(min(width, round(k * width / count / align) * align) for k in range(1, count))})
    strips = []
    for left, right in itertools.pairwise(bounds):
        first = next(j for j, x in enumerate(lefts) if x + tile_width > left)
        last = max(j for j, x in enumerate(lefts) if x < right)
        strips.append(Strip(left, right, first, last))
    return strips
