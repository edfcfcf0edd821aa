"""Bounded admission: a work budget, a bounded queue and the running slots every analysis passes through.

A request's *work* is its analysed pixels times ``samples + 1`` (the deterministic pass counts as one).
Admission is decided before the upload is read into memory, from the image header:

* work over ``max_work`` on its own → 413 ``too_much_work`` (no waiting would help);
* ``max_concurrent`` running and ``max_queue`` waiting already, or the work of everything admitted plus
  this request's over ``max_work`` → 503 ``overloaded`` with ``Retry-After``;
* otherwise the request waits, in arrival order, for one of the ``max_concurrent`` slots.

So the work admitted at any time (running and waiting together) never exceeds ``max_work``: that is what
bounds the memory of the analyses' results (see :mod:`app.defaults`, ``BYTES_PER_WORK_UNIT``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import anyio
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.error_codes import ErrorCode
from app.web.settings import env_name

__all__ = ["Admission", "Overloaded", "Reservation", "TooMuchWork"]

RETRY_AFTER_MAX = 60


class TooMuchWork(StarletteHTTPException):
    """413: one request's work is over the budget by itself."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.TOO_MUCH_WORK.status, message)
        self.code = ErrorCode.TOO_MUCH_WORK


class Overloaded(StarletteHTTPException):
    """503 with ``Retry-After``: no room for this request right now."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(ErrorCode.OVERLOADED.status, message, headers={"Retry-After": str(retry_after)})
        self.code = ErrorCode.OVERLOADED


@dataclass(eq=False)
class Reservation:
    """One admitted request: its work and whether it holds a running slot."""

    work: int
    admitted_at: float = field(default_factory=time.monotonic)
    running: bool = False


class Admission:
    """The counters and the slots of admission control (event-loop side only; not thread-safe).

    Args:
        max_concurrent: Requests that may run at once.
        max_queue: Requests that may wait behind them.
        max_work: The most work admitted at once (running and waiting together).
    """

    def __init__(self, max_concurrent: int, max_queue: int, max_work: int) -> None:
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.max_work = max_work
        self.admitted = 0
        self.running = 0
        self.work = 0
        self.seconds_per_request = 1.0
        self._slots = anyio.CapacityLimiter(max_concurrent)

    @property
    def waiting(self) -> int:
        """Admitted requests that do not run yet."""
        return self.admitted - self.running

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the requests ahead divided among the slots, times the mean request time."""
        ahead = self.waiting + 1
        return max(1, min(RETRY_AFTER_MAX, math.ceil(self.seconds_per_request * ahead / self.max_concurrent)))

    def check_room(self) -> None:
        """Refuse at once when every slot and every queue place is taken (before the upload is even looked at).

        Raises:
            Overloaded: the queue is full.
        """
        if self.admitted >= self.max_concurrent + self.max_queue:
            raise Overloaded(
                f"the server is busy: {self.running} analyses running and {self.waiting} waiting, the most it queues "
                f"({env_name('max_queue')} = {self.max_queue}); retry later",
                self.retry_after(),
            )

    def reserve(self, work: int, describe: str, advice: str) -> Reservation:
        """Admit a request of ``work`` units, or refuse it.

        Args:
            work: Analysed pixels × (samples + 1).
            describe: The request's work in words, for the error messages.
            advice: What would make a request too big on its own fit, for the 413's message.

        Raises:
            TooMuchWork: ``work`` alone is over ``max_work``.
            Overloaded: the queue is full, or the work admitted already leaves no room for ``work``.
        """
        if work > self.max_work:
            raise TooMuchWork(f"{describe} = {work:,} units of work, more than the server's budget of {self.max_work:,} ({env_name('max_work')}); {advice}")
        self.check_room()
        if self.work + work > self.max_work:
            raise Overloaded(
                f"the server is busy: {describe} = {work:,} units of work, and {self.work:,} of its {self.max_work:,} "
                "are taken by the analyses running and waiting; retry later",
                self.retry_after(),
            )
        self.admitted += 1
        self.work += work
        return Reservation(work)

    async def acquire(self, reservation: Reservation) -> None:
        """Wait (first come, first served) for a running slot."""
        await self._slots.acquire_on_behalf_of(reservation)
        reservation.running = True
        self.running += 1

    def release(self, reservation: Reservation, seconds: float | None = None) -> None:
        """Give back the slot (if held) and the work of a finished, failed or abandoned request.

        Args:
            reservation: What :meth:`reserve` returned.
            seconds: How long it ran, to update the mean request time behind ``Retry-After``.
        """
        if reservation.running:
            reservation.running = False
            self.running -= 1
            self._slots.release_on_behalf_of(reservation)
        self.admitted -= 1
        self.work -= reservation.work
        if seconds is not None:
            self.seconds_per_request += 0.2 * (seconds - self.seconds_per_request)
