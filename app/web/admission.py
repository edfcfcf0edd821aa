"""Bounded admission: a work budget, a bounded queue and the running slots every analysis passes through.

A request's *work* is its analysed pixels times ``samples + 1`` (the deterministic pass counts as one).
Admission is decided before the upload is read into memory, from the image header:

* work over ``max_work`` on its own → 413 ``too_much_work`` (no waiting would help);
* ``max_concurrent`` running and ``max_queue`` waiting already, or the work of everything admitted plus
  this request's over ``max_work`` → 503 ``overloaded`` with ``Retry-After``;
* otherwise the request waits, in arrival order, for one of the ``max_concurrent`` slots.

So the work admitted at any time (running and waiting together) never exceeds ``max_work``: that is what
bounds the memory of the analyses' results (see :mod:`app.defaults`, ``BYTES_PER_WORK_UNIT``).

``Retry-After`` comes from the measured service time: how long requests held their running slot (from getting it to
finishing, as :meth:`Admission.held_seconds` reads it when the service releases them), as an exponentially weighted mean
(1.0 s until the first measurement; then each new one weighs :data:`SERVICE_TIME_WEIGHT`). A refused request would be
``waiting + 1``-th in line for one of ``max_concurrent`` slots, so it is told
``ceil(mean service time × (waiting + 1) / max_concurrent)`` seconds, clamped to 1..:data:`RETRY_AFTER_MAX`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.error_codes import ErrorCode
from app.plural import plural
from app.web.settings import env_name

__all__ = ["INITIAL_SERVICE_SECONDS", "RETRY_AFTER_MAX", "SERVICE_TIME_WEIGHT", "Admission", "Overloaded", "Reservation", "TooMuchWork"]

RETRY_AFTER_MAX = 60
INITIAL_SERVICE_SECONDS = 1.0
SERVICE_TIME_WEIGHT = 0.2


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
    """One admitted request: its work, when it was admitted and got its running slot (the gate's clock), and whether it holds it."""

    work: int
    admitted_at: float
    running: bool = False
    started_at: float | None = None


class Admission:
    """The counters and the slots of admission control (event-loop side only; not thread-safe).

    Args:
        max_concurrent: Requests that may run at once.
        max_queue: Requests that may wait behind them.
        max_work: The most work admitted at once (running and waiting together).
        clock: Seconds, monotonic: ``time.monotonic`` (tests pass a fake).

    Attributes:
        service_seconds: The weighted mean time a request holds its running slot, behind ``Retry-After``.
        measured: How many service times went into it (0: it is still :data:`INITIAL_SERVICE_SECONDS`).
    """

    def __init__(self, max_concurrent: int, max_queue: int, max_work: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.max_work = max_work
        self.clock = clock
        self.admitted = 0
        self.running = 0
        self.work = 0
        self.service_seconds = INITIAL_SERVICE_SECONDS
        self.measured = 0
        self._slots = anyio.CapacityLimiter(max_concurrent)

    @property
    def waiting(self) -> int:
        """Admitted requests that do not run yet."""
        return self.admitted - self.running

    @property
    def full(self) -> bool:
        """Every running slot and every queue place is taken."""
        return self.admitted >= self.max_concurrent + self.max_queue

    def retry_after(self) -> int:
        """Seconds until a slot is likely free for a request refused now.

        It would be ``waiting + 1``-th in line for one of ``max_concurrent`` slots, each freed after the mean service
        time: ``ceil(service_seconds × (waiting + 1) / max_concurrent)``, clamped to 1..:data:`RETRY_AFTER_MAX`.
        """
        position = self.waiting + 1
        return max(1, min(RETRY_AFTER_MAX, math.ceil(self.service_seconds * position / self.max_concurrent)))

    def busy_message(self) -> str:
        """Why a request is refused while the queue is full, in words (the start of the 503's message)."""
        running = plural(self.running, "analysis", "analyses")
        return f"the server is busy: {running} running and {self.waiting} waiting, the most it queues ({env_name('max_queue')} = {self.max_queue})"

    def check_room(self) -> None:
        """Refuse at once when every slot and every queue place is taken (before the upload is even looked at).

        Raises:
            Overloaded: the queue is full.
        """
        if self.full:
            raise Overloaded(f"{self.busy_message()}; retry later", self.retry_after())

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
        return Reservation(work, admitted_at=self.clock())

    async def acquire(self, reservation: Reservation) -> None:
        """Wait (first come, first served) for a running slot."""
        await self._slots.acquire_on_behalf_of(reservation)
        reservation.running = True
        reservation.started_at = self.clock()
        self.running += 1

    def held_seconds(self, reservation: Reservation) -> float | None:
        """How long ``reservation`` has held its running slot so far (its service time once it is finished); ``None`` if it never got one."""
        if reservation.started_at is None:
            return None
        return max(0.0, self.clock() - reservation.started_at)

    def release(self, reservation: Reservation, seconds: float | None = None) -> None:
        """Give back the slot (if held) and the work of a finished, failed or abandoned request.

        Args:
            reservation: What :meth:`reserve` returned.
            seconds: Its service time (:meth:`held_seconds`), folded into the mean behind ``Retry-After``; ``None``
                (it never ran) leaves the mean as it is.
        """
        if reservation.running:
            reservation.running = False
            self.running -= 1
            self._slots.release_on_behalf_of(reservation)
        self.admitted -= 1
        self.work -= reservation.work
        if seconds is not None:
            self.observe_service(seconds)

    def observe_service(self, seconds: float) -> None:
        """Fold one measured service time into the mean: the first replaces the initial guess, later ones weigh :data:`SERVICE_TIME_WEIGHT`."""
        if self.measured == 0:
            self.service_seconds = seconds
        else:
            self.service_seconds += SERVICE_TIME_WEIGHT * (seconds - self.service_seconds)
        self.measured += 1
