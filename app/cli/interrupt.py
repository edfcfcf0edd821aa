"""Stop a long command cleanly on SIGINT (Ctrl-C) or SIGTERM.

The first signal cancels :attr:`StopSignals.token`: the running analysis stops at its next cancellation point
(within one chunk of samples, or one block of the file being decoded: :mod:`app.io.cancellable_read`) and the command
winds down by itself, writing what it has. A second signal
raises :class:`KeyboardInterrupt` at once, except while :meth:`StopSignals.held` (a summary being written),
when it is only noted.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

from app.engine.cancel import CancelToken

__all__ = ["INTERRUPTED_EXIT", "StopSignals"]

INTERRUPTED_EXIT = 130
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """A context that turns SIGINT and SIGTERM into a cooperative stop (a no-op outside the main thread).

    Attributes:
        token: Cancelled, with the signal's name as reason, by the first signal.
        signal_name: ``"SIGINT"`` or ``"SIGTERM"`` once one arrived, else ``None``.
    """

    def __init__(self) -> None:
        self.token = CancelToken()
        self.signal_name: str | None = None
        self._held = False
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            self.token.cancel(self.signal_name)
        elif not self._held:
            raise KeyboardInterrupt

    @contextmanager
    def held(self) -> Iterator[None]:
        """Within this block a second signal is only noted, never raised."""
        self._held = True
        try:
            yield
        finally:
            self._held = False
