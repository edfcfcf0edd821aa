"""Cooperative cancellation of a running analysis.

The caller (a web request's watcher, say) holds a :class:`CancelToken` and may cancel it from any thread,
or give it a deadline. The engine calls :meth:`CancelToken.check` at its cancellation points, between MC
sample chunks, between row tiles of the tiled head and between sliding-window tiles, and stops there by
raising :class:`AnalysisCancelled`. Work between two checks is never interrupted, so cancellation takes
effect within one chunk's time.
"""

from __future__ import annotations

import threading
import time

__all__ = ["AnalysisCancelled", "CancelToken", "checkpoint"]


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
    """

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
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
