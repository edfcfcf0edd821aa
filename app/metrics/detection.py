"""How well an uncertainty score separates positives (errors, or OOD pixels) from negatives: exact, streamed, bounded.

Every score is keyed by its exact value: the IEEE bit pattern of the float (as float64; a float32 map loses nothing)
is mapped onto an unsigned integer whose order is the order of the values, ``0.0`` and ``-0.0`` sharing one key. A
running table sorted by key holds, per distinct value, how many positives and negatives had it, so AUROC and AURC are
exact with ties: a tied (positive, negative) pair counts ½ in AUROC, and a tie group spreads its errors evenly over
its positions in AURC. Chunks are reduced on arrival (``np.unique``-style) and merged into the table in amortised
batches.

Memory grows with the number of *distinct* values, not with pixels, and is capped at ``max_distinct`` entries
(:data:`~app.defaults.DETECTION_MAX_DISTINCT`, 32 bytes each). Past the cap the table is coarsened: the lowest bits of
every key are dropped, the fewest that bring it back to half the cap. Neighbouring values then share a bin whose width
is a fixed fraction of the value (floating-point bins are log-spaced), so resolution stays fine near 0 and near the top
of the range, where segmentation scores pile up, unlike equal-width bins. Values merged into one bin count as ties;
:meth:`DetectionStats.auroc_error_bound` and :meth:`DetectionStats.aurc_error_bound` bound how far that can move
each number from the exact one (both 0 while nothing was merged). Shapes: scores and flags ``(N,)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.special import digamma

from app.defaults import DETECTION_MAX_DISTINCT

__all__ = ["DetectionStats", "ordered_keys"]

_SIGN = np.uint64(1 << 63)
_MERGED = np.uint64(0)  # representative of a bin holding several distinct values (the key of no real float: a NaN)


def ordered_keys(scores: np.ndarray) -> np.ndarray:
    """``uint64`` keys in the order of the float values; equal values (``0.0`` and ``-0.0`` too) share a key.

    Raises:
        ValueError: a score is NaN.
    """
    x = np.ascontiguousarray(scores, dtype=np.float64).reshape(-1) + 0.0  # + 0.0 turns -0.0 into +0.0
    if np.isnan(x).any():
        raise ValueError("scores contain NaN")
    bits = x.view(np.uint64)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


@dataclass
class _Table:
    """Bins sorted by ``key``: counts and the one original key they hold (:data:`_MERGED` when several)."""

    key: np.ndarray
    rep: np.ndarray
    pos: np.ndarray
    neg: np.ndarray

    @staticmethod
    def empty() -> _Table:
        return _Table(np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.key.size)

    @staticmethod
    def group(key: np.ndarray, rep: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> _Table:
        """Sum the rows of equal ``key`` into one bin each, sorted by key."""
        if key.size == 0:
            return _Table.empty()
        order = np.argsort(key, kind="stable")
        key, rep, pos, neg = key[order], rep[order], pos[order], neg[order]
        starts = np.concatenate(([0], np.flatnonzero(key[1:] != key[:-1]) + 1))
        lo, hi = np.minimum.reduceat(rep, starts), np.maximum.reduceat(rep, starts)
        merged_rep = np.where(lo == hi, lo, _MERGED)
        return _Table(key[starts], merged_rep, np.add.reduceat(pos, starts), np.add.reduceat(neg, starts))

    def coarsened(self, bits: int) -> _Table:
        """The table with the lowest ``bits`` bits of every key dropped."""
        return _Table.group(self.key >> np.uint64(bits), self.rep, self.pos, self.neg)

    def distinct_after(self, bits: int) -> int:
        """How many bins :meth:`coarsened` would leave (the keys are sorted, so only neighbours can merge)."""
        shifted = self.key >> np.uint64(bits)
        return 1 + int(np.count_nonzero(shifted[1:] != shifted[:-1])) if shifted.size else 0


@dataclass
class DetectionStats:
    """Streaming, exact AUROC / AURC of an uncertainty score (higher = more likely positive).

    Args:
        max_distinct: Most bins kept; more distinct values than this coarsen the table (see the module notes).
    """

    max_distinct: int = DETECTION_MAX_DISTINCT
    shift: int = field(default=0, init=False)
    _table: _Table = field(default_factory=_Table.empty, init=False, repr=False)
    _pending: list[_Table] = field(default_factory=list, init=False, repr=False)
    _pending_rows: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_distinct < 4:
            raise ValueError(f"max_distinct must be >= 4, got {self.max_distinct}")

    def update(self, scores: torch.Tensor | np.ndarray, positive: torch.Tensor | np.ndarray) -> None:
        """Add ``(N,)`` scores and ``(N,)`` boolean positive flags.

        Raises:
            ValueError: NaN scores, or scores and flags of different lengths.
        """
        s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
        flags = (positive.detach().cpu().numpy() if isinstance(positive, torch.Tensor) else np.asarray(positive)).reshape(-1).astype(bool)
        keys = ordered_keys(s)
        if keys.size != flags.size:
            raise ValueError(f"{keys.size} scores but {flags.size} flags")
        if keys.size == 0:
            return
        chunk = _Table.group(keys >> np.uint64(self.shift), keys, flags.astype(np.int64), (~flags).astype(np.int64))
        self._pending.append(chunk)
        self._pending_rows += len(chunk)
        if self._pending_rows > max(self.max_distinct, len(self._table)):
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        parts = [self._table, *self._pending]
        self._pending, self._pending_rows = [], 0
        table = _Table.group(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("key", "rep", "pos", "neg")))
        if len(table) > self.max_distinct:
            target = max(1, self.max_distinct // 2)
            lo, hi = 1, 63 - self.shift  # fewest extra bits that bring the table to the target (63: two bins at most)
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if table.distinct_after(mid) <= target else (mid + 1, hi)
            table = table.coarsened(lo)
            self.shift += lo
        self._table = table

    def _bins(self) -> _Table:
        self._flush()
        return self._table

    @property
    def exact(self) -> bool:
        """Whether every bin holds one distinct value (nothing merged), so the metrics are exact."""
        return not bool((self._bins().rep == _MERGED).any())

    @property
    def distinct(self) -> int:
        """Bins in the table: the distinct values seen, or fewer once coarsened."""
        return len(self._bins())

    def auroc(self) -> float | None:
        """P(score of a positive > score of a negative) + ½ P(tie); ``None`` without both kinds."""
        t = self._bins()
        n_pos, n_neg = int(t.pos.sum()), int(t.neg.sum())
        if n_pos == 0 or n_neg == 0:
            return None
        neg_below = (np.cumsum(t.neg) - t.neg).astype(np.float64)
        wins = float((t.pos.astype(np.float64) * (neg_below + 0.5 * t.neg)).sum())
        return wins / (float(n_pos) * float(n_neg))

    def auroc_error_bound(self) -> float:
        """Largest possible ``|auroc() − exact AUROC|``: half the (positive, negative) pairs inside merged bins."""
        t = self._bins()
        n_pos, n_neg = int(t.pos.sum()), int(t.neg.sum())
        if n_pos == 0 or n_neg == 0:
            return 0.0
        merged = t.rep == _MERGED
        return 0.5 * float((t.pos[merged].astype(np.float64) * t.neg[merged]).sum()) / (float(n_pos) * float(n_neg))

    @staticmethod
    def _harmonic_gap(kept: np.ndarray, size: np.ndarray) -> np.ndarray:
        """``Σ_{j=1..size} 1 / (kept + j)``, i.e. ``H(kept + size) − H(kept)``."""
        return np.asarray(digamma(kept + size + 1.0) - digamma(kept + 1.0), dtype=np.float64)

    def aurc(self) -> float | None:
        """Area under the risk–coverage curve, pixels kept from least to most uncertain; ``None`` when empty.

        Risk at coverage ``k/N`` is the error rate among the ``k`` most certain pixels (positives are errors); the area
        is the mean risk over all ``k``. Within a tie group of ``m`` pixels with ``e`` errors, ``j`` kept pixels hold
        ``e·j/m`` errors, so a group after ``K`` pixels and ``E`` errors adds
        ``Σ_j (E + e·j/m) / (K + j) = e + (E − e·K/m)·(H(K + m) − H(K))`` (``H``: harmonic numbers).
        """
        t = self._bins()
        n = int(t.pos.sum() + t.neg.sum())
        if n == 0:
            return None
        size = (t.pos + t.neg).astype(np.float64)
        errors = t.pos.astype(np.float64)
        kept = np.cumsum(size) - size
        before = np.cumsum(errors) - errors
        total = errors.sum() + ((before - errors * kept / size) * self._harmonic_gap(kept, size)).sum()
        return float(total) / n

    def aurc_error_bound(self) -> float:
        """Largest possible ``|aurc() − exact AURC|``: inside a merged bin the errors may come in any order.

        At each position ``j`` of a bin the errors kept differ from the even spread by at most ``min(e, m − e)``.
        """
        t = self._bins()
        n = int(t.pos.sum() + t.neg.sum())
        merged = t.rep == _MERGED
        if n == 0 or not merged.any():
            return 0.0
        size = (t.pos + t.neg).astype(np.float64)
        kept = np.cumsum(size) - size
        errors = t.pos.astype(np.float64)
        slack = np.minimum(errors, size - errors)[merged]
        return float((slack * self._harmonic_gap(kept[merged], size[merged])).sum()) / n
