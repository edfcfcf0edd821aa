"""Run an admitted job in a worker thread under a watcher that cancels it at the deadline or when the client leaves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from app.engine.cancel import AnalysisCancelled, CancelToken
from app.error_codes import ErrorCode
from app.web.admission import Admission, Reservation
from app.web.errors import ApiError
from app.web.settings import env_name

__all__ = ["WATCH_SECONDS", "Disconnected", "never_disconnected", "supervise"]

T = TypeVar("T")
WATCH_SECONDS = 0.1
Disconnected = Callable[[], Awaitable[bool]]


async def never_disconnected() -> bool:
    """A client that never goes away (the default of callers without a connection)."""
    return False


async def supervise(
    admission: Admission,
    reservation: Reservation,
    token: CancelToken,
    job: Callable[[CancelToken], T],
    disconnected: Disconnected,
    started: Callable[[Reservation], None],
    timeout: float,
    timeout_setting: str = "request_timeout",
) -> T:
    """Wait for ``reservation``'s running slot, then run ``job(token)`` in a worker thread; its result.

    A watcher on the event loop cancels ``token`` once its deadline passes or ``disconnected()`` says the client left,
    while the job waits and while it runs (the job stops at its next cancellation point, :mod:`app.engine.cancel`).

    Args:
        admission: The gate ``reservation`` was admitted by.
        reservation: The admitted request.
        token: The job's cancellation token, with its deadline.
        job: The work, run in a worker thread.
        disconnected: Whether the client has gone away.
        started: Called once the job has its running slot, before it runs.
        timeout: The deadline in seconds, for the 504 message.
        timeout_setting: The setting that gave it, for the 504 message.

    Raises:
        ApiError: 504 past the deadline; 499 when the client went away.
        Exception: whatever ``job`` raised.
    """
    outcome: list[T] = []
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        waiting = anyio.CancelScope()
        tg.start_soon(_watch, token, disconnected, waiting)
        try:
            with waiting:
                await admission.acquire(reservation)
            if reservation.running:
                started(reservation)
                outcome.append(await anyio.to_thread.run_sync(job, token))
        except Exception as exc:
            failure = exc
        finally:
            tg.cancel_scope.cancel()
    if outcome:
        return outcome[0]
    if failure is not None and not isinstance(failure, AnalysisCancelled):
        raise failure
    if token.reason == "deadline":
        raise ApiError(
            ErrorCode.TIMEOUT,
            f"the analysis did not finish within the server's limit of {timeout:g} s ({env_name(timeout_setting)}) "
            "and was stopped; use fewer samples, resolution=working or a smaller image, or retry when the server is less busy",
        )
    raise ApiError(ErrorCode.CLIENT_DISCONNECTED, "the client closed the connection; the analysis was stopped")


async def _watch(token: CancelToken, disconnected: Disconnected, waiting: anyio.CancelScope) -> None:
    """Cancel ``token`` (and stop ``waiting``) once the deadline passes or the client goes away."""
    try:
        while not token.expired():
            if await disconnected():
                token.cancel("disconnected")
                break
            await anyio.sleep(WATCH_SECONDS)
        waiting.cancel()
    finally:
        token.cancel("abandoned")
