"""Top-label calibration of class probabilities, streamed over any number of labelled pixels.

:class:`CalibrationStats` gives the ECE over equal-width confidence bins (:data:`~app.defaults.ECE_BINS`), the maximum
calibration error, NLL, Brier score and reliability-diagram data. Shapes: probabilities ``(N, C)``, labels ``(N,)``;
callers flatten images and keep only scored pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from app.defaults import ECE_BINS

__all__ = ["CalibrationResult", "CalibrationStats", "Reliability", "binning_text"]


def binning_text(bins: int = ECE_BINS) -> str:
    """How confidences are binned, in words."""
    return f"top-label, {bins} equal-width bins on [0, 1]"


@dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data, one entry per confidence bin (``None`` for an empty bin)."""

    lower: list[float]
    upper: list[float]
    count: list[int]
    accuracy: list[float | None]
    confidence: list[float | None]


@dataclass(frozen=True)
class CalibrationResult:
    """Calibration of one set of probabilities."""

    ece: float
    mce: float
    nll: float
    brier: float
    accuracy: float
    pixels: int
    bins: int
    binning: str
    reliability: Reliability


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

    def result(self) -> CalibrationResult:
        """ECE, MCE, NLL, Brier and per-bin reliability data."""
        n = max(self.total, 1)
        nonzero = self.count > 0
        acc = np.divide(self.correct_sum, self.count, out=np.zeros(self.bins), where=nonzero)
        conf = np.divide(self.conf_sum, self.count, out=np.zeros(self.bins), where=nonzero)
        gaps = np.abs(acc - conf)
        edges = np.linspace(0, 1, self.bins + 1)
        return CalibrationResult(
            ece=float((self.count * gaps).sum() / n),
            mce=float(gaps[nonzero].max()) if nonzero.any() else 0.0,
            nll=self.nll_sum / n,
            brier=self.brier_sum / n,
            accuracy=float(self.correct_sum.sum() / n),
            pixels=self.total,
            bins=self.bins,
            binning=binning_text(self.bins),
            reliability=Reliability(
                lower=[float(v) for v in edges[:-1]],
                upper=[float(v) for v in edges[1:]],
                count=[int(c) for c in self.count],
                accuracy=[float(a) if c else None for a, c in zip(acc, self.count, strict=True)],
                confidence=[float(v) if c else None for v, c in zip(conf, self.count, strict=True)],
            ),
        )
