"""One-pass summary of an image streamed in column strips (:mod:`app.engine.strips`), each band by band.

:class:`StripedSummary` gives each strip a :class:`~app.maps.band_summary.BandSummary` of its columns, at the whole
image's preview factor (strip boundaries are multiples of it, so no preview block straddles two strips), and merges
them: image means weighted by the strips' areas, class rows from the summed per-class pixels and map sums (boxes
shifted to image columns), previews side by side. One strip is exactly a :class:`BandSummary` of the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.maps.band_summary import BandSummary, class_rows, preview_factor
from app.maps.regions import Region

__all__ = ["StripedSummary"]


class StripedSummary:
    """Accumulates an image's prediction and maps strip by strip (arguments as :class:`~app.maps.band_summary.BandSummary`)."""

    def __init__(
        self,
        height: int,
        width: int,
        class_names: Sequence[str],
        map_names: Sequence[str],
        preview_side: int = 2048,
        preview_names: Sequence[str] | None = None,
    ) -> None:
        self.factor = preview_factor(height, width, map_names, preview_side)
        self.height, self.width = height, width
        self.class_names, self.map_names = list(class_names), list(map_names)
        self.preview_names = [n for n in self.map_names if preview_names is None or n in preview_names]
        self._strips: list[tuple[int, BandSummary]] = []

    def strip(self, left: int, right: int) -> BandSummary:
        """The summary of columns ``[left, right)``: the next strip, to be given its bands in order.

        Raises:
            ValueError: The strip does not start where the previous one ended (or at 0), the previous one is not
                complete, it passes the image, or it starts off the preview blocks' grid.
        """
        end = self._strips[-1][0] + self._strips[-1][1].width if self._strips else 0
        if left != end or not left < right <= self.width:
            raise ValueError(f"the strip {left}..{right} must start at column {end} and end inside the image's {self.width} columns")
        if left % self.factor:
            raise ValueError(f"a strip must start at a multiple of the preview factor {self.factor}, not at column {left}")
        if self._strips and not self._strips[-1][1].complete:
            raise ValueError(f"the strip before column {left} is not complete: add all its rows first")
        summary = BandSummary(self.height, right - left, self.class_names, self.map_names, factor=self.factor, preview_names=self.preview_names)
        self._strips.append((left, summary))
        return summary

    def means(self) -> dict[str, float]:
        """Map name → the map's image mean."""
        self._require_complete()
        return {name: sum(s.means()[name] * s.width for _, s in self._strips) / self.width for name in self.map_names}

    def class_regions(self) -> list[Region]:
        """The class rows of ``region_table`` over the whole image (see :meth:`BandSummary.class_regions`)."""
        self._require_complete()
        parts = [(left, *s.class_totals()) for left, s in self._strips]
        k = max(pixels.size for _, pixels, _, _ in parts)
        pixels = np.zeros(k, dtype=np.int64)
        sums = np.zeros((len(self.map_names), k))
        box = np.array([[self.width], [self.height], [0], [0]], dtype=np.int64).repeat(k, axis=1)
        for left, count, total, strip_box in parts:
            present = np.flatnonzero(count)
            pixels[: count.size] += count
            sums[:, : count.size] += total
            shifted = strip_box[:, present] + np.array([[left], [0], [left], [0]])
            box[:2, present] = np.minimum(box[:2, present], shifted[:2])
            box[2:, present] = np.maximum(box[2:, present], shifted[2:])
        return class_rows(pixels, sums, box, self.height * self.width, self.class_names, self.map_names)

    def previews(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The prediction's and the previewed maps' previews, ``(ceil(H / f), ceil(W / f))``, the strips' side by side (one
        strip: its summary's own arrays, not copies)."""
        self._require_complete()
        if len(self._strips) == 1:
            return self._strips[0][1].previews(copy=False)
        parts = [s.previews(copy=False) for _, s in self._strips]
        labels = np.concatenate([p[0] for p in parts], axis=1)
        return labels, {name: np.concatenate([p[1][name] for p in parts], axis=1) for name in self.preview_names}

    def _require_complete(self) -> None:
        covered = self._strips[-1][0] + self._strips[-1][1].width if self._strips else 0
        if covered != self.width:
            raise RuntimeError(f"only {covered} of the image's {self.width} columns were added: add the remaining strips first")
        if not self._strips[-1][1].complete:
            raise RuntimeError("the last strip is not complete: add all its rows first")
