"""How well an uncertainty score separates positives (errors, or OOD pixels) from negatives, streamed.

Scores are histogrammed on a fine fixed grid (:data:`~app.defaults.SCORE_BINS` bins over the map's range), so memory is
constant; pixels in one bin count as ties. Shapes: scores and flags ``(N,)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from app.defaults import SCORE_BINS

__all__ = ["DetectionStats"]


@dataclass
class DetectionStats:
    """Streaming AUROC / AURC of an uncertainty score (higher = more likely positive).

    Args:
        lo: Lower end of the score's fixed range.
        hi: Upper end.
    """

    lo: float
    hi: float
    bins: int = SCORE_BINS
    pos: np.ndarray = field(init=False)
    neg: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.hi <= self.lo:
            raise ValueError(f"empty score range [{self.lo}, {self.hi}]")
        self.pos = np.zeros(self.bins, dtype=np.int64)
        self.neg = np.zeros(self.bins, dtype=np.int64)

    def update(self, scores: torch.Tensor, positive: torch.Tensor) -> None:
        """Add ``(N,)`` scores and ``(N,)`` boolean positive flags."""
        t = ((scores.double() - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
        idx = torch.clamp((t * self.bins).long(), max=self.bins - 1)
        flag = positive.bool()
        self.pos += torch.bincount(idx[flag], minlength=self.bins).numpy()
        self.neg += torch.bincount(idx[~flag], minlength=self.bins).numpy()

    def auroc(self) -> float | None:
        """P(score of a positive > score of a negative) + ½ P(tie); ``None`` without both kinds."""
        n_pos, n_neg = int(self.pos.sum()), int(self.neg.sum())
        if n_pos == 0 or n_neg == 0:
            return None
        neg_below = np.cumsum(self.neg) - self.neg
        wins = (self.pos.astype(np.float64) * (neg_below + 0.5 * self.neg)).sum()
        return float(wins / (n_pos * n_neg))

    def aurc(self) -> float | None:
        """Area under the risk–coverage curve, pixels kept from least to most uncertain.

        Risk at coverage ``k/N`` is the error rate among the ``k`` most certain
        pixels (positives are errors); the area is the mean risk over all ``k``.
        Within a bin (ties), errors are spread evenly.
        """
        n = int(self.pos.sum() + self.neg.sum())
        if n == 0:
            return None
        total = 0.0
        kept, errors = 0, 0.0
        for b in np.nonzero(self.pos + self.neg)[0]:
            m, e = int(self.pos[b] + self.neg[b]), float(self.pos[b])
            j = np.arange(1, m + 1, dtype=np.float64)
            total += float(((errors + e * j / m) / (kept + j)).sum())
            kept += m
            errors += e
        return total / n
