"""Cooperative cancellation of a running analysis.

The caller (a web request's watcher, say) holds a :class:`CancelToken` and may cancel it from any thread,
or give it a deadline. The engine calls :meth:`CancelToken.check` at its cancellation points, between MC
sample chunks, between row tiles of the tiled head and between sliding-window tiles, and stops there by
raising :class:`AnalysisCancelled`. Work between two checks is never interrupted, so cancellation takes
effect within one chunk's time.

A token may also carry a :class:`Progress`: the engine reports the same loops' completed steps to it with
:func:`progress_steps` (sliding-window tiles, then the passes of a tile or image, then the sample chunks or
row tiles of a pass), each inner loop dividing one step of the loop around it, so the fraction done rises
steadily from 0 to 1 over one analysis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AnalysisCancelled", "CancelToken", "Progress", "checkpoint", "progress_steps"]


class AnalysisCancelled(Exception):
    """Raised at a cancellation point once the analysis's token is cancelled.

    Attributes:
        reason: Why: ``"deadline"`` when the token's deadline passed, else what :meth:`CancelToken.cancel` was given.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"analysis cancelled: {reason}")
        self.reason = reason


class CancelToken:
    """A thread-safe cancel flag with an optional deadline, and a count of the checks made.

    Args:
        deadline: ``time.monotonic()`` value past which :meth:`check` cancels; ``None``: none.
        progress: Where the engine reports the steps it completes (:func:`progress_steps`); ``None``: nowhere.
    """

    def __init__(self, deadline: float | None = None, progress: Progress | None = None) -> None:
        self.deadline = deadline
        self.progress = progress
        self.checks = 0
        self._reason: str | None = None
        self._lock = threading.Lock()

    @property
    def reason(self) -> str | None:
        """Why the token was cancelled; ``None`` while it is not."""
        return self._reason

    def cancel(self, reason: str) -> None:
        """Cancel (the first reason given is kept)."""
        with self._lock:
            if self._reason is None:
                self._reason = reason

    def expired(self) -> bool:
        """Whether the deadline has passed (cancelling the token with reason ``"deadline"`` if so)."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.cancel("deadline")
        return self._reason is not None

    def check(self) -> None:
        """A cancellation point: count it, then stop if cancelled or past the deadline.

        Raises:
            AnalysisCancelled: the token is cancelled.
        """
        self.checks += 1
        if self.expired():
            raise AnalysisCancelled(self._reason or "cancelled")


def checkpoint(token: CancelToken | None) -> None:
    """:meth:`CancelToken.check` when there is a token."""
    if token is not None:
        token.check()


@dataclass
class _Stage:
    base: float
    step: float
    total: int
    done: int = 0


class Progress:
    """How much of one analysis is done, from nested loops of steps, as a fraction in ``[0, 1]``.

    The outermost loop the engine opens (:func:`progress_steps`) spans the whole analysis; a loop opened while
    another is running divides that loop's current step. ``report(progress)`` is called after every step, in the
    analysis's thread: read :attr:`fraction`, or :attr:`done` of :attr:`total` :attr:`unit` (the outermost loop's,
    e.g. 3.5 of 12 tiles).

    Args:
        report: Called after every completed step; ``None``: nothing is called (read :attr:`fraction` when you like).
    """

    def __init__(self, report: Callable[[Progress], None] | None = None) -> None:
        self.report = report
        self.fraction = 0.0
        self.total = 0
        self.unit = ""
        self._stages: list[_Stage] = []

    @property
    def done(self) -> float:
        """Steps of the outermost loop done, with the current step's part done (``fraction × total``)."""
        return self.fraction * self.total

    def reset(self) -> None:
        """Forget the loops of an analysis that stopped early (an error), so that the next one starts from 0."""
        self._stages.clear()

    def open(self, total: int, unit: str) -> Callable[[], None]:
        """Begin a loop of ``total`` steps inside the current step (the outermost one: the whole analysis); its step counter."""
        if total < 1:
            return _nothing
        parent = self._stages[-1] if self._stages else None
        if parent is None:
            self.fraction, self.total, self.unit = 0.0, total, unit
        base = self.fraction
        stage = _Stage(base, (parent.step if parent is not None else 1.0) / total, total)
        self._stages.append(stage)

        def advance() -> None:
            if stage.done >= stage.total:
                return
            stage.done += 1
            self.fraction = max(self.fraction, min(1.0, stage.base + stage.done * stage.step))
            if any(open_stage is stage for open_stage in self._stages):
                while self._stages[-1] is not stage:
                    self._stages.pop()  # inner loops left unfinished (a loop that stopped early) end with their step
                if stage.done == stage.total:
                    self._stages.pop()
            if self.report is not None:
                self.report(self)

        return advance


def _nothing() -> None:
    """The step counter of a loop that reports nowhere."""


def progress_steps(token: CancelToken | None, total: int, unit: str) -> Callable[[], None]:
    """Begin a loop of ``total`` steps (``unit``: "tile", "pass", "chunk", "row tile") of ``token``'s :class:`Progress`; call the
    result after each step. A no-op without a token or a progress; the loop ends with its last step."""
    if token is None or token.progress is None:
        return _nothing
    return token.progress.open(total, unit)
