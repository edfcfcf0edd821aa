"""The 8-connected components of a label map given band by band (and column strip by column strip), in bounded memory.

:class:`StreamedComponents` gives the component rows of :func:`app.maps.regions.region_table` for an image no array
holds whole. Each band is labelled on its own (one ``ndimage.label`` per class present); its fragments are joined to the
previous band's last row and to the previous strip's last column where two 8-neighbours share a class (union-find), and
every component's pixels, box, first pixel in raster order and map sums are kept on its root, merged as roots merge.
After each band the components that can no longer grow — none of their pixels on the open edges (the band's last row,
the strip's last column, the previous strip's last column below this band) — are closed: kept when at least
``min_area`` pixels, dropped otherwise (their pixels still count in their class row). So memory is the open
components plus the kept ones, whatever the image's size. Ranks are by size, ties by the first pixel in raster order,
as ``ndimage.label`` numbers them. Pure numpy and scipy; no model here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from app.maps.regions import Region

__all__ = ["CHUNK_PIXELS", "StreamedComponents"]

CHUNK_PIXELS = 1 << 18

_EIGHT = np.ones((3, 3), dtype=bool)


class _Edges(NamedTuple):
    """A band's fragment ids along its first and last row and its first and last column (int64)."""

    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray


_BIG = np.iinfo(np.int64).max


class StreamedComponents:
    """Accumulates the components of a ``height × width`` label map from bands of column strips.

    Args:
        height: Image rows.
        width: Image columns.
        names: The maps whose sums each component keeps (its means).
        min_area: Components smaller than this are not listed.
    """

    def __init__(self, height: int, width: int, names: Sequence[str], min_area: int) -> None:
        if min_area < 1:
            raise ValueError(f"min_area must be >= 1, got {min_area}")
        self.height, self.width, self.names, self.min_area = height, width, list(names), min_area
        self._parent = np.zeros(0, dtype=np.int64)
        self._cls = np.zeros(0, dtype=np.int64)
        self._pix = np.zeros(0, dtype=np.int64)
        self._lo = np.zeros((3, 0), dtype=np.int64)  # x0, y0, first raster index
        self._hi = np.zeros((2, 0), dtype=np.int64)  # x1, y1 (exclusive)
        self._sums = np.zeros((len(self.names), 0))
        self._alive = np.zeros(0, dtype=bool)
        self._above: np.ndarray | None = None
        self._right = np.full(height, -1, dtype=np.int64)
        self._previous = np.full(height, -1, dtype=np.int64)
        self._strip = -1
        self._kept: list[tuple[int, int, list[int], int, np.ndarray]] = []  # class, pixels, box, first, sums

    def add(self, top: int, left: int, prediction: np.ndarray, values: Sequence[np.ndarray]) -> None:
        """Add the band at ``(top, left)``: ``(rows, cols)`` labels and one ``(rows, cols)`` map per name, in order (taken
        :data:`CHUNK_PIXELS` at a time, so the temporaries are bounded whatever the band's size)."""
        pred = np.asarray(prediction)
        step = max(1, CHUNK_PIXELS // max(1, pred.shape[1]))
        for a in range(0, pred.shape[0], step):
            self._add_rows(top + a, left, pred[a : a + step], [np.asarray(v)[a : a + step] for v in values])

    def _add_rows(self, top: int, left: int, prediction: np.ndarray, values: Sequence[np.ndarray]) -> None:
        if left != self._strip:
            self._previous, self._right, self._above, self._strip = self._right, np.full(self.height, -1, dtype=np.int64), None, left
        edges = self._label(top, left, np.asarray(prediction), values)
        rows = edges.left.size
        pairs = []
        if self._above is not None:
            pairs += _neighbours(self._above, edges.top)
        if left > 0:
            for d in (-1, 0, 1):
                lo, hi = max(0, -(top + d)), min(rows, self.height - top - d)
                if lo < hi:
                    pairs.append((self._previous[top + d + lo : top + d + hi], edges.left[lo:hi]))
        self._join(pairs)
        self._above = edges.bottom
        self._right[top : top + rows] = edges.right
        open_ids = [self._above, self._right[: top + rows], self._previous[max(0, top + rows - 1) :]]
        self._close(np.concatenate(open_ids))

    def rows(self, class_names: Sequence[str], sure: str | None = None) -> list[Region]:
        """The component rows, class by class (ascending), largest first (ties: first pixel in raster order).

        Args:
            class_names: Name of each class index.
            sure: The name whose mean is each row's ``sure_share`` (and which is left out of its means), or ``None``.
        """
        self._close(np.zeros(0, dtype=np.int64))
        total = self.height * self.width
        order = sorted(range(len(self._kept)), key=lambda i: (self._kept[i][0], -self._kept[i][1], self._kept[i][3]))
        rows, rank, last = [], 0, -1
        for i in order:
            c, pixels, box, _, sums = self._kept[i]
            rank = rank + 1 if c == last else 1
            last = c
            means = {name: float(sums[k] / pixels) for k, name in enumerate(self.names) if name != sure}
            rows.append(
                Region(
                    kind="component",
                    class_index=c,
                    class_name=class_names[c] if c < len(class_names) else str(c),
                    component=rank,
                    pixels=pixels,
                    share=float(pixels / total),
                    bbox=box,
                    means=means,
                    errors=dict.fromkeys(means),
                    sure_share=None if sure is None else float(sums[self.names.index(sure)] / pixels),
                )
            )
        return rows

    def _label(self, top: int, left: int, pred: np.ndarray, values: Sequence[np.ndarray]) -> _Edges:
        """Label the band's fragments with new ids and append their statistics; the ids on the band's four edges.

        Temporaries are about 20 bytes a band pixel (int32 labels, the stable sort behind the first pixels, one float64
        map at a time).
        """
        rows, cols = pred.shape
        local = np.zeros((rows, cols), dtype=np.int32)
        classes: list[np.ndarray] = []
        count = 0
        for c in np.flatnonzero(np.bincount(pred.ravel().astype(np.intp))):
            labels, n = ndimage.label(pred == c, structure=_EIGHT, output=np.int32)
            np.add(labels, count, out=local, where=labels > 0)
            classes.append(np.full(n, c, dtype=np.int64))
            count += n
            del labels
        flat = local.ravel()
        pix = np.bincount(flat, minlength=count + 1)[1:].astype(np.int64)
        sums = np.zeros((len(values), count))
        for k, v in enumerate(values):
            sums[k] = np.bincount(flat, weights=np.asarray(v, dtype=np.float32).ravel(), minlength=count + 1)[1:]
        boxes = ndimage.find_objects(local)
        y0 = np.array([b[0].start for b in boxes], dtype=np.int64) + top
        x0 = np.array([b[1].start for b in boxes], dtype=np.int64) + left
        y1 = np.array([b[0].stop for b in boxes], dtype=np.int64) + top
        x1 = np.array([b[1].stop for b in boxes], dtype=np.int64) + left
        _, at = np.unique(flat, return_index=True)
        first = (at // cols + top) * self.width + at % cols + left
        base = self._parent.size
        self._parent = np.concatenate([self._parent, np.arange(base, base + count, dtype=np.int64)])
        self._cls = np.concatenate([self._cls, *classes])
        self._pix = np.concatenate([self._pix, pix])
        self._lo = np.concatenate([self._lo, np.stack([x0, y0, first.astype(np.int64)])], axis=1)
        self._hi = np.concatenate([self._hi, np.stack([x1, y1])], axis=1)
        self._sums = np.concatenate([self._sums, sums], axis=1)
        self._alive = np.concatenate([self._alive, np.ones(count, dtype=bool)])
        shift = base - 1
        return _Edges(*(edge.astype(np.int64) + shift for edge in (local[0], local[-1], local[:, 0], local[:, -1])))

    def _find(self, i: int) -> int:
        parent = self._parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    def _roots(self, ids: np.ndarray) -> np.ndarray:
        roots: np.ndarray = self._parent[ids]
        while True:
            up: np.ndarray = self._parent[roots]
            if np.array_equal(up, roots):
                return roots
            roots = up

    def _join(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Union the fragments of every pair of 8-neighbours of one class, moving each absorbed root's statistics onto its new root."""
        if not pairs:
            return
        a = np.concatenate([p[0] for p in pairs])
        b = np.concatenate([p[1] for p in pairs])
        keep = (a >= 0) & (b >= 0)
        a, b = a[keep], b[keep]
        keep = self._cls[a] == self._cls[b]
        edges = np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0)
        absorbed = []
        for x, y in edges:
            rx, ry = self._find(int(x)), self._find(int(y))
            if rx != ry:
                root, child = min(rx, ry), max(rx, ry)
                self._parent[child] = root
                absorbed.append(child)
        if not absorbed:
            return
        moved = np.array(absorbed, dtype=np.int64)
        target = self._roots(moved)
        np.add.at(self._pix, target, self._pix[moved])
        for k in range(self._sums.shape[0]):
            np.add.at(self._sums[k], target, self._sums[k, moved])
        for k in range(3):
            np.minimum.at(self._lo[k], target, self._lo[k, moved])
        for k in range(2):
            np.maximum.at(self._hi[k], target, self._hi[k, moved])
        self._pix[moved] = 0
        self._sums[:, moved] = 0.0
        self._lo[:, moved] = _BIG
        self._hi[:, moved] = -1

    def _close(self, open_ids: np.ndarray) -> None:
        """Close every live component none of whose fragments is in ``open_ids``; keep it when large enough; compact."""
        live = np.flatnonzero(self._alive)
        if live.size == 0:
            return
        roots = self._roots(live)
        still_open = np.zeros(self._parent.size, dtype=bool)
        open_ids = open_ids[open_ids >= 0]
        still_open[self._roots(open_ids)] = True
        closing = ~still_open[roots]
        for r in np.unique(roots[closing]):
            if self._pix[r] >= self.min_area:
                box = [int(self._lo[0, r]), int(self._lo[1, r]), int(self._hi[0, r]), int(self._hi[1, r])]
                self._kept.append((int(self._cls[r]), int(self._pix[r]), box, int(self._lo[2, r]), self._sums[:, r].copy()))
        self._alive[live[closing]] = False
        roots_alive = int(np.count_nonzero(self._alive & (self._parent == np.arange(self._parent.size))))
        if self._alive.size > 1024 and roots_alive * 2 < self._alive.size:
            self._compact()

    def _compact(self) -> None:
        """Keep only the live roots (every absorbed fragment's statistics are on its root), renumbered; the open edges'
        ids become their roots' new ids."""
        keep = np.flatnonzero(self._alive & (self._parent == np.arange(self._parent.size)))
        new = np.full(self._parent.size, -1, dtype=np.int64)
        new[keep] = np.arange(keep.size)

        def renumber(ids: np.ndarray) -> np.ndarray:
            return np.where(ids >= 0, new[self._roots(np.maximum(ids, 0))], -1)

        self._right, self._previous = renumber(self._right), renumber(self._previous)
        self._above = renumber(self._above) if self._above is not None else None
        self._parent = np.arange(keep.size, dtype=np.int64)
        self._cls, self._pix, self._alive = self._cls[keep], self._pix[keep], self._alive[keep]
        self._lo, self._hi, self._sums = self._lo[:, keep], self._hi[:, keep], self._sums[:, keep]


def _neighbours(above: np.ndarray, below: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 8-neighbour pairs between a row and the row under it (same columns)."""
    return [(above, below), (above[:-1], below[1:]), (above[1:], below[:-1])]
