"""Column strips: they tile the output's columns at aligned boundaries, and each runs exactly the tiles touching it."""

from __future__ import annotations

import itertools

import pytest

from app.engine.sliding_window import plan_grid
from app.engine.strips import plan_strips


@pytest.mark.parametrize(("width", "columns", "align"), [(5000, 1024, 64), (1600, 512, 512), (4000, 4096, 512), (9999, 3000, 1), (700, 100, 1000)])
def test_strips_tile_the_columns_and_hold_every_tile_that_touches_them(width: int, columns: int, align: int) -> None:
    grid = plan_grid(256, width + (-width) % 32, (256, 352), 32)
    tw = grid.tile[1]
    strips = plan_strips(grid.lefts, tw, width, columns, align)
    assert strips[0].left == 0 and strips[-1].right == width
    for a, b in itertools.pairwise(strips):
        assert a.right == b.left and a.right % align == 0
    for strip in strips:
        touching = [j for j, x in enumerate(grid.lefts) if x < strip.right and x + tw > strip.left]
        assert list(range(strip.first, strip.last + 1)) == touching
        assert strip.right - strip.left <= max(columns, align) + align
    wanted = -(-width // columns)
    assert len(strips) == (1 if align >= width else min(wanted, len({round(k * width / wanted / align) * align for k in range(1, wanted)} - {0, width}) + 1))


def test_one_strip_when_not_asked_or_narrow() -> None:
    grid = plan_grid(256, 1024, (256, 352), 32)
    for columns in (None, 1024, 5000):
        [strip] = plan_strips(grid.lefts, 352, 1000, columns, 1)
        assert (strip.left, strip.right, strip.first, strip.last) == (0, 1000, 0, len(grid.lefts) - 1)
    with pytest.raises(ValueError, match="positive"):
        plan_strips(grid.lefts, 352, 0)
