"""Calibration and detection metrics, streamed over any number of labelled pixels.

* :class:`CalibrationStats` — top-label ECE over 15 equal-width bins, maximum
  calibration error, NLL, Brier score and reliability-diagram data, from class
  probabilities and labels.
* :class:`DetectionStats` — how well a score separates positives (errors, or
  OOD pixels) from negatives: AUROC and, for error detection, the AURC.
  Scores are histogrammed on a fine fixed grid (65 536 bins over the map's
  range), so memory is constant; pixels in one bin count as ties.

Shapes: probabilities ``(N, C)``, labels / scores / flags ``(N,)``; callers
flatten images and drop ignored pixels first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

ECE_BINS = 15
SCORE_BINS = 65_536


@dataclass
class CalibrationStats:
    """Streaming top-label calibration of class probabilities."""

    bins: int = ECE_BINS
    count: np.ndarray = field(init=False)
    conf_sum: np.ndarray = field(init=False)
    correct_sum: np.ndarray = field(init=False)
    nll_sum: float = 0.0
    brier_sum: float = 0.0
    total: int = 0

    def __post_init__(self) -> None:
        self.count = np.zeros(self.bins, dtype=np.int64)
        self.conf_sum = np.zeros(self.bins, dtype=np.float64)
        self.correct_sum = np.zeros(self.bins, dtype=np.float64)

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Add ``(N, C)`` probabilities and ``(N,)`` labels in ``[0, C)``."""
        if probs.shape[0] != labels.shape[0]:
            raise ValueError(f"{probs.shape[0]} probability rows but {labels.shape[0]} labels")
        if probs.shape[0] == 0:
            return
        p = probs.double()
        y = labels.long()
        conf, pred = p.max(dim=1)
        correct = (pred == y).double()
        idx = torch.clamp((conf * self.bins).long(), max=self.bins - 1)
        self.count += torch.bincount(idx, minlength=self.bins).numpy()
        self.conf_sum += torch.bincount(idx, weights=conf, minlength=self.bins).numpy()
        self.correct_sum += torch.bincount(idx, weights=correct, minlength=self.bins).numpy()
        p_true = p.gather(1, y[:, None]).squeeze(1)
        self.nll_sum += float(-torch.log(p_true.clamp(min=1e-12)).sum())
        self.brier_sum += float(((p * p).sum(1) - 2 * p_true + 1).sum())
        self.total += int(y.numel())

    def result(self) -> dict[str, object]:
        """ECE, MCE, NLL, Brier and per-bin reliability data."""
        n = max(self.total, 1)
        nonzero = self.count > 0
        acc = np.divide(self.correct_sum, self.count, out=np.zeros(self.bins), where=nonzero)
        conf = np.divide(self.conf_sum, self.count, out=np.zeros(self.bins), where=nonzero)
        gaps = np.abs(acc - conf)
        return {
            "ece": float((self.count * gaps).sum() / n),
            "mce": float(gaps[nonzero].max()) if nonzero.any() else 0.0,
            "nll": self.nll_sum / n,
            "brier": self.brier_sum / n,
            "accuracy": float(self.correct_sum.sum() / n),
            "pixels": self.total,
            "bins": self.bins,
            "binning": f"top-label, {self.bins} equal-width bins on [0, 1]",
            "reliability": {
                "lower": np.linspace(0, 1, self.bins + 1)[:-1].tolist(),
                "upper": np.linspace(0, 1, self.bins + 1)[1:].tolist(),
                "count": self.count.tolist(),
                "accuracy": [float(a) if c else None for a, c in zip(acc, self.count, strict=True)],
                "confidence": [float(v) if c else None for v, c in zip(conf, self.count, strict=True)],
            },
        }


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
