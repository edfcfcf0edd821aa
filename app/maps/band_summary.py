"""One-pass summary of a large image's maps, streamed band by band (full-width rows), for images whose maps nothing holds whole.

:class:`BandSummary` takes the bands in order and gives what the in-memory path computes from the whole arrays: the image
mean of every map (``arr.mean(dtype=np.float64)``), the class rows of :func:`app.maps.regions.region_table` (same order,
pixels, shares, boxes and means; ``errors`` are ``None``: a stream has no replicates), and block-mean / block-mode
previews for PNGs. Sums are float64, so values equal the whole-array ones up to summation order (~1e-12 relative).
Between bands it keeps per-class sums and one partial block-row of preview accumulators, never a full-resolution array.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from app.maps.regions import Region

__all__ = ["BandSummary", "class_rows", "preview_factor"]

_CHUNK_PIXELS = 1 << 20  # pixels of a band handled at once: bounds the temporaries whatever the band's height
_COUNT_CELLS = 1 << 22  # (block, class) label counts held at once by the mode preview


class BandSummary:
    """Accumulates an image's prediction and maps band by band into means, class rows and previews.

    Args:
        height: Image rows ``H``.
        width: Image columns ``W``.
        class_names: Name of each class index (a label past the end is named by its index, as in ``region_table``).
        map_names: The maps to summarise, in the order of the results' dicts; ``add`` ignores other maps.
        preview_side: The previews' longest side is at most this; the factor is ``ceil(max(H, W) / preview_side)``.
        factor: The previews' factor instead (a strip of a wider image uses the image's, :mod:`app.maps.strip_summary`).
        preview_names: The maps that get a preview (``None``: all); the others get their means and class sums only.

    Raises:
        ValueError: On an empty image, a ``preview_side`` below 1 or repeated map names.
    """

    def __init__(
        self,
        height: int,
        width: int,
        class_names: Sequence[str],
        map_names: Sequence[str],
        preview_side: int = 2048,
        factor: int | None = None,
        preview_names: Sequence[str] | None = None,
    ) -> None:
        natural = preview_factor(height, width, map_names, preview_side)
        self.height, self.width = height, width
        self.class_names = list(class_names)
        self.map_names = list(map_names)
        f = self._f = factor if factor is not None else natural
        self._col_sizes = np.diff(np.append(np.arange(0, width, f), width))
        self._col_block = np.arange(width) // f
        self._preview_shape = (-(-height // f), len(self._col_sizes))
        self._next = 0  # the first row not added yet
        self._k = 0  # classes tracked: max(len(class_names), largest label + 1)
        self._pixels = np.zeros(0, dtype=np.int64)
        self._sums = np.zeros((len(self.map_names), 0))  # map × class sums
        self._box = np.zeros((4, 0), dtype=np.int64)  # x0, y0, x1, y1 per class
        self._totals = np.zeros(len(self.map_names))
        self.preview_names = [n for n in self.map_names if preview_names is None or n in preview_names]
        self._slot = {name: self.preview_names.index(name) for name in self.preview_names}
        self._pending = np.zeros((len(self.preview_names), self._preview_shape[1]))  # the partial block-row's map sums
        self._pending_counts = np.zeros((self._preview_shape[1], 0), dtype=np.int64)  # its label counts per block
        self._map_previews = np.zeros((len(self.preview_names), *self._preview_shape), dtype=np.float32)
        self._label_preview: np.ndarray | None = None
        self._grow(len(self.class_names))

    @property
    def complete(self) -> bool:
        """Whether every row has been added."""
        return self._next == self.height

    @property
    def factor(self) -> int:
        """The previews' downsampling factor ``f`` (1: the previews are the full-resolution arrays)."""
        return self._f

    def add(self, top: int, prediction: np.ndarray, maps: Mapping[str, np.ndarray]) -> None:
        """Add the rows ``[top, top + rows)`` at full width.

        Args:
            top: The band's first row: the row after the previous band (0 for the first).
            prediction: ``(rows, W)`` non-negative integer class indices.
            maps: Name → ``(rows, W)`` float map (float16 or float32; summed in float64), for every name of ``map_names``.

        Raises:
            ValueError: On a gap or overlap with the previous band, rows past the image, a wrong shape, a missing map,
                or labels that are not non-negative integers. The summary is unchanged then.
        """
        pred = np.asarray(prediction)
        if top != self._next:
            raise ValueError(f"the band starts at row {top} but the next row is {self._next}: add bands in order, contiguous and without overlap")
        if pred.ndim != 2 or pred.shape[1] != self.width:
            raise ValueError(f"a band must be (rows, {self.width}), got prediction of shape {pred.shape}")
        if top + pred.shape[0] > self.height:
            raise ValueError(f"the band's rows {top}..{top + pred.shape[0]} pass the image's {self.height} rows")
        if not np.issubdtype(pred.dtype, np.integer):
            raise ValueError(f"the prediction must hold integer class indices, got {pred.dtype}")
        missing = [name for name in self.map_names if name not in maps]
        if missing:
            raise ValueError(f"the band lacks the maps {missing}")
        values = [np.asarray(maps[name]) for name in self.map_names]
        for name, v in zip(self.map_names, values, strict=True):
            if v.shape != pred.shape:
                raise ValueError(f"map {name!r} is {v.shape}, the band's prediction {pred.shape}")
        if pred.size == 0:
            return
        if pred.min() < 0:
            raise ValueError("class indices must be non-negative")
        self._grow(int(pred.max()) + 1)
        if self._label_preview is None:
            self._label_preview = np.zeros(self._preview_shape, dtype=pred.dtype)
        cells = self._f * (_COUNT_CELLS // (self._preview_shape[1] * self._k) - 1) if self._f > 1 else pred.shape[0]
        step = max(1, min(_CHUNK_PIXELS // self.width, cells))
        for a in range(0, pred.shape[0], step):
            self._add_rows(top + a, pred[a : a + step], [v[a : a + step] for v in values])
        self._next = top + pred.shape[0]

    def means(self) -> dict[str, float]:
        """Map name → the map's image mean (float64 sums over all bands)."""
        self._require_complete()
        total = self.height * self.width
        return {name: float(self._totals[i] / total) for i, name in enumerate(self.map_names)}

    def class_totals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per class index: pixels ``(K,)``, map sums ``(maps, K)`` (float64) and boxes ``x0, y0, x1, y1`` ``(4, K)``."""
        self._require_complete()
        return self._pixels.copy(), self._sums.copy(), self._box.copy()

    def class_regions(self) -> list[Region]:
        """The class rows of ``region_table`` (classes present, ascending), with ``errors`` of ``None`` for every map."""
        self._require_complete()
        return class_rows(self._pixels, self._sums, self._box, self.height * self.width, self.class_names, self.map_names)

    def previews(self, copy: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The prediction's and the previewed maps' previews, ``(ceil(H / f), ceil(W / f))`` for the factor ``f`` (``copy=False``:
        the summary's own arrays, valid while it lives).

        Returns:
            The block mode of the prediction (ties: the smaller class; the input's dtype) and map name → the block mean
            of the map (float32); edge blocks cover only the pixels the image has.
        """
        self._require_complete()
        assert self._label_preview is not None
        if not copy:
            return self._label_preview, {name: self._map_previews[i] for i, name in enumerate(self.preview_names)}
        return self._label_preview.copy(), {name: self._map_previews[i].copy() for i, name in enumerate(self.preview_names)}

    def _require_complete(self) -> None:
        if self._next != self.height:
            raise RuntimeError(f"only {self._next} of the image's {self.height} rows were added: add the remaining bands first")

    def _grow(self, k: int) -> None:
        """Track classes ``0..k-1``."""
        extra = k - self._k
        if extra <= 0:
            return
        self._pixels = np.concatenate([self._pixels, np.zeros(extra, dtype=np.int64)])
        self._sums = np.concatenate([self._sums, np.zeros((len(self.map_names), extra))], axis=1)
        empty = np.array([[self.width], [self.height], [0], [0]], dtype=np.int64).repeat(extra, axis=1)
        self._box = np.concatenate([self._box, empty], axis=1)
        self._pending_counts = np.concatenate([self._pending_counts, np.zeros((self._preview_shape[1], extra), dtype=np.int64)], axis=1)
        self._k = k

    def _add_rows(self, top: int, pred: np.ndarray, values: list[np.ndarray]) -> None:
        """Add a chunk of a validated band."""
        rows, w, f, k = pred.shape[0], self.width, self._f, self._k
        lab = pred.astype(np.intp, copy=False)
        local = np.arange(rows)
        by_row = np.bincount((local[:, None] * k + lab).ravel(), minlength=rows * k).reshape(rows, k) > 0
        by_col = np.bincount((lab * w + np.arange(w)).ravel(), minlength=k * w).reshape(k, w)
        self._pixels += by_col.sum(axis=1)
        seen = by_row.any(axis=0)
        lo = np.stack([(by_col > 0).argmax(axis=1), top + by_row.argmax(axis=0)])
        hi = np.stack([w - (by_col[:, ::-1] > 0).argmax(axis=1), top + rows - by_row[::-1].argmax(axis=0)])
        self._box[:2, seen] = np.minimum(self._box[:2, seen], lo[:, seen])
        self._box[2:, seen] = np.maximum(self._box[2:, seen], hi[:, seen])

        # Preview groups: the chunk's rows of each block-row; the first may continue the pending block-row, the last
        # stays pending unless it ends its block-row.
        starts = np.flatnonzero(((top + local) % f == 0) | (local == 0))
        first, end = top // f, top + rows
        done = len(starts) if end % f == 0 or end == self.height else len(starts) - 1
        heights = np.minimum(np.arange(first + 1, first + done + 1) * f, self.height) - np.arange(first, first + done) * f
        areas = heights[:, None] * self._col_sizes
        for i, (name, v) in enumerate(zip(self.map_names, values, strict=True)):
            self._totals[i] += v.sum(dtype=np.float64)
            self._sums[i] += np.bincount(lab.ravel(), weights=v.ravel(), minlength=k)
            if name not in self._slot:
                continue
            j = self._slot[name]
            g = _block_sums(v, top % f, f, len(starts), self._preview_shape[1])
            g[0] += self._pending[j]
            self._map_previews[j, first : first + done] = g[:done] / areas
            self._pending[j] = g[-1] if done < len(starts) else 0.0
        assert self._label_preview is not None
        if f == 1:
            self._label_preview[top:end] = pred
            return
        group = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, rows)))
        wb = self._preview_shape[1]
        codes = (group[:, None] * wb + self._col_block) * k + lab
        counts = np.bincount(codes.ravel(), minlength=len(starts) * wb * k).reshape(len(starts), wb, k)
        counts[0] += self._pending_counts
        self._label_preview[first : first + done] = counts[:done].argmax(axis=2)
        self._pending_counts = counts[-1].copy() if done < len(starts) else np.zeros_like(self._pending_counts)


def _block_sums(v: np.ndarray, offset: int, f: int, groups: int, blocks: int) -> np.ndarray:
    """Float64 sums of ``v`` over blocks of ``f`` columns and of ``f`` rows, the first row block being ``f - offset``
    rows high: ``(groups, blocks)``. Added as ``f`` strided slices a side (faster than ``np.add.reduceat``)."""
    rows = np.zeros((groups, v.shape[1]))
    for j in range(f):
        part = v[(j - offset) % f :: f]
        first = 0 if j >= offset else 1
        rows[first : first + part.shape[0]] += part
    out = np.zeros((groups, blocks))
    for j in range(f):
        part = rows[:, j::f]
        out[:, : part.shape[1]] += part
    return out


def preview_factor(height: int, width: int, map_names: Sequence[str], preview_side: int) -> int:
    """``ceil(max(H, W) / preview_side)``, the previews' factor.

    Raises:
        ValueError: On an empty image, a ``preview_side`` below 1 or repeated map names.
    """
    if height < 1 or width < 1:
        raise ValueError(f"the image must have at least one pixel, got {height}×{width}")
    if preview_side < 1:
        raise ValueError(f"preview_side must be >= 1, got {preview_side}")
    if len(set(map_names)) != len(map_names):
        raise ValueError(f"map names repeat: {list(map_names)}")
    return max(1, math.ceil(max(height, width) / preview_side))


def class_rows(pixels: np.ndarray, sums: np.ndarray, box: np.ndarray, total: int, class_names: Sequence[str], map_names: Sequence[str]) -> list[Region]:
    """The class rows of ``region_table`` from per-class totals (:meth:`BandSummary.class_totals`) of a ``total``-pixel image."""
    rows = []
    for c in np.flatnonzero(pixels):
        count = int(pixels[c])
        rows.append(
            Region(
                kind="class",
                class_index=int(c),
                class_name=class_names[int(c)] if c < len(class_names) else str(c),
                component=None,
                pixels=count,
                share=float(count / total),
                bbox=[int(v) for v in box[:, c]],
                means={name: float(sums[i, c] / count) for i, name in enumerate(map_names)},
                errors=dict.fromkeys(map_names),
            )
        )
    return rows
