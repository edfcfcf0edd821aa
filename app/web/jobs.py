"""Long analyses as jobs: a request whose work is over the synchronous budget is answered 202 and runs in the background.

A :class:`Job` is one analyze or evaluate request that the service (:mod:`app.web.service`) accepted as a job: its upload
was read into memory, it waits (first come, first served among jobs) until admission control has room for it, runs
under the job deadline in a running slot like any request, and keeps its answer, the bytes the synchronous request would
have answered, until it expires. Its progress is the engine's (:class:`~app.engine.cancel.Progress`, reported per
sliding-window tile, pass and sample chunk); cancelling it cancels its token, which stops the engine at its next
cancellation point or takes the job out of the queue.

The :class:`JobStore` keeps at most ``max_jobs`` jobs (queued, running and finished together; the oldest finished one
makes room for a new one, and when none is finished a new job is refused with 503) and forgets a finished job
``ttl`` seconds after it finished. Its jobs run as tasks of the task group :meth:`JobStore.serve` holds for the app's
lifetime.

With API keys on, a job belongs to the key that submitted it (:attr:`Job.owner`), and so does the analysis it keeps: for
any other key its status, events, result and cancelling answer 404 ``job_not_found``, exactly as an unknown id.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup, TaskStatus
from fastapi import Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.engine.cancel import CancelToken, Progress
from app.error_codes import ErrorCode
from app.io.decoding import ImageDecodeError
from app.io.masks import MaskError
from app.plural import plural, word_for
from app.web.admission import RETRY_AFTER_MAX, SERVICE_TIME_WEIGHT, Overloaded
from app.web.errors import ApiError, error_body
from app.web.security.api_keys import current_owner, same_owner
from app.web.settings import env_name

__all__ = ["Answer", "Job", "JobError", "JobKind", "JobMode", "JobState", "JobStore", "failure_of"]

log = logging.getLogger("app.web")

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
JobKind = Literal["analyze", "evaluate"]
JobMode = Literal["auto", "sync", "job"]
FINISHED: tuple[JobState, ...] = ("done", "failed", "cancelled")
RETRY_AFTER = 5
_NOBODY = "\x00no job"  # the owner an unknown id is compared with (no real owner tag)


@dataclass(frozen=True)
class Answer:
    """What an analysis answers over HTTP: the synchronous request's answer, and a finished job's result."""

    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        """The HTTP response of this answer (status 200)."""
        return Response(self.body, media_type=self.media_type, headers=self.headers)


@dataclass(frozen=True)
class JobError:
    """Why a job failed: the error the synchronous request would have answered."""

    code: str
    status: int
    message: str
    field: str | None = None

    def response(self) -> Response:
        """The error response, in the common shape, with the error's status."""
        return JSONResponse(error_body(self.code, self.message, self.field), status_code=self.status)


def failure_of(exc: BaseException) -> JobError:
    """The error answer of an exception raised by a job (as the app's error handlers would answer it; unexpected ones logged)."""
    if isinstance(exc, ApiError):
        return JobError(exc.code, exc.status, exc.message, exc.field)
    if isinstance(exc, ImageDecodeError):
        return JobError(exc.code, exc.code.status, exc.message, "file")
    if isinstance(exc, MaskError):
        return JobError(exc.code, exc.code.status, exc.message, "mask")
    if isinstance(exc, StarletteHTTPException):
        code = getattr(exc, "code", None) or "http_error"
        return JobError(str(code), exc.status_code, exc.detail if isinstance(exc.detail, str) else str(code))
    log.error("unhandled error in a job", exc_info=exc)
    return JobError(ErrorCode.INTERNAL_ERROR, ErrorCode.INTERNAL_ERROR.status, "an unexpected error occurred on the server; it has been logged")


@dataclass(eq=False)
class Job:
    """One accepted long request.

    Attributes:
        id: Its id in URLs.
        kind: ``"analyze"`` or ``"evaluate"``.
        model: The served model it runs on.
        work: Its work units (analysed pixels × passes × (samples + 1)).
        describe: Its work in words.
        token: Its cancellation token, carrying :attr:`progress`; its deadline is set once it is admitted.
        progress: How much of its analysis is done (the engine's loops: tiles, passes, sample chunks).
        state: ``queued`` (waiting for room), ``running``, ``done``, ``failed`` or ``cancelled``.
        created: ``time.time()`` when accepted; ``started`` and ``finished`` likewise, once they happen.
        answer: The result once ``done``.
        error: Why, once ``failed`` or ``cancelled``.
        owner: The owner tag of the API key that submitted it (``None`` with keys off).
    """

    id: str
    kind: JobKind
    model: str
    work: int
    describe: str
    progress: Progress = field(default_factory=Progress)
    token: CancelToken = field(init=False)
    state: JobState = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    answer: Answer | None = None
    error: JobError | None = None
    owner: str | None = None
    expires: float = float("inf")
    changed: anyio.Event = field(default_factory=anyio.Event, repr=False)

    def __post_init__(self) -> None:
        self.token = CancelToken(progress=self.progress)

    @property
    def is_finished(self) -> bool:
        """Whether it is done, failed or cancelled."""
        return self.state in FINISHED

    def mark(self, state: JobState, *, answer: Answer | None = None, error: JobError | None = None) -> None:
        """Move to ``state`` (event-loop side), with its answer or error; wakes whoever waits for a change."""
        self.state = state
        now = time.time()
        if state == "running":
            self.started = now
        if state in FINISHED:
            self.finished = now
            self.answer, self.error = answer, error
        self.notify()

    def notify(self) -> None:
        """Wake the tasks waiting in :meth:`wait_change` (event-loop side)."""
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_change(self, timeout: float) -> None:
        """Wait until the state changes, or ``timeout`` seconds (progress is read by polling: it changes in a worker thread)."""
        with anyio.move_on_after(timeout):
            await self.changed.wait()


class JobStore:
    """The kept jobs by id, and the task group their work runs in.

    Args:
        max_jobs: Most jobs kept, queued, running and finished together.
        ttl: Seconds a finished job stays readable.
        id_prefix: Start of every job id (the replica's, like analysis ids).
        clock: ``time.monotonic`` (tests pass a fake).
    """

    def __init__(self, max_jobs: int, ttl: float, id_prefix: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self.max_jobs = max_jobs
        self.ttl = ttl
        self.id_prefix = id_prefix
        self.clock = clock
        self.turn = anyio.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: TaskGroup | None = None
        self.mean_job_seconds: float | None = None

    def __len__(self) -> int:
        self._expire()
        return len(self._jobs)

    @property
    def enabled(self) -> bool:
        """Whether jobs are accepted at all (``SEGU_MAX_JOBS`` > 0)."""
        return self.max_jobs > 0

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold the task group jobs run in until cancelled (the app's lifespan); cancelling it stops every job."""
        async with anyio.create_task_group() as tg:
            self._tasks = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tasks = None
                for job in self._jobs.values():
                    job.token.cancel("shutdown")

    def check_room(self) -> None:
        """Refuse a new job when every kept job is unfinished.

        Raises:
            Overloaded: no room.
        """
        self._expire()
        if len(self._jobs) >= self.max_jobs and not any(job.is_finished for job in self._jobs.values()):
            raise Overloaded(
                f"the server is busy: {plural(len(self._jobs), 'job')} {word_for(len(self._jobs), 'is', 'are')} queued or running, "
                f"the most it keeps ({env_name('max_jobs')} = {self.max_jobs}); retry later",
                self.retry_after(),
            )

    def record_duration(self, seconds: float) -> None:
        """Fold a finished job's running time into :attr:`mean_job_seconds` (the same weighting as admission's)."""
        mean = self.mean_job_seconds
        self.mean_job_seconds = seconds if mean is None else (1.0 - SERVICE_TIME_WEIGHT) * mean + SERVICE_TIME_WEIGHT * seconds

    def retry_after(self, now: float | None = None) -> int:
        """Seconds until a kept job is likely to finish and free its place, for a full store's ``Retry-After``.

        The measured mean running time less how long the longest-running job has run (at least 1 s), or the mean
        itself when every job still waits; :data:`RETRY_AFTER` until a job has finished. Clamped to 1..60.
        """
        mean = self.mean_job_seconds
        if mean is None:
            return RETRY_AFTER
        clock = time.time() if now is None else now
        running = [clock - job.started for job in self._jobs.values() if job.state == "running" and job.started is not None]
        remaining = max(1.0, mean - max(running)) if running else mean
        return max(1, min(RETRY_AFTER_MAX, math.ceil(remaining)))

    def submit(self, kind: JobKind, model: str, work: int, describe: str, run: Callable[[Job], Awaitable[None]]) -> Job:
        """Keep a new job of the request's API key and start ``run(job)`` in the background (making room by dropping the
        oldest finished jobs). The job's task starts in the request's context, so what it keeps is that key's too.

        Raises:
            Overloaded: no room (:meth:`check_room`).
            RuntimeError: the store is not serving (outside the app's lifespan).
        """
        self.check_room()
        if self._tasks is None:
            raise RuntimeError("the job store is not serving: call serve() in the app's lifespan")
        while len(self._jobs) >= self.max_jobs:
            oldest = next(key for key, job in self._jobs.items() if job.is_finished)
            del self._jobs[oldest]
        job = Job(f"{self.id_prefix}{secrets.token_urlsafe(12)}", kind, model, work, describe, owner=current_owner())
        self._jobs[job.id] = job
        self._tasks.start_soon(self._run, job, run, name=f"job {job.id}")
        return job

    async def _run(self, job: Job, run: Callable[[Job], Awaitable[None]]) -> None:
        try:
            await run(job)
        finally:
            if not job.is_finished:  # cancelled by the shutdown of the task group
                job.mark("cancelled", error=JobError(ErrorCode.NOT_READY, ErrorCode.NOT_READY.status, "the server shut down before the job finished"))
            if job.state == "done" and job.started is not None and job.finished is not None:
                self.record_duration(job.finished - job.started)
            job.expires = self.clock() + self.ttl

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The kept job ``job_id`` of ``owner`` (an API key's tag; ``None`` with keys off).

        Raises:
            ApiError: 404 ``job_not_found``, the same for another owner's job as for an id that never existed.
        """
        self._expire()
        job = self._jobs.get(job_id)
        mine = same_owner(job.owner if job is not None else _NOBODY, owner)
        if job is None or not mine:
            raise ApiError(
                ErrorCode.JOB_NOT_FOUND,
                f"job {job_id!r} has expired or never existed: finished jobs are kept for {self.ttl:g} s ({env_name('job_ttl_seconds')}), "
                f"at most {plural(self.max_jobs, 'job')} at once ({env_name('max_jobs')}); send the request again",
                "job_id",
            )
        return job

    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """Cancel job ``job_id`` of ``owner`` (a finished job stays as it is); the job.

        Raises:
            ApiError: 404 ``job_not_found`` (:meth:`get`).
        """
        job = self.get(job_id, owner)
        if not job.is_finished:
            job.token.cancel("cancelled")
            job.notify()
        return job

    def _expire(self) -> None:
        now = self.clock()
        for key in [key for key, job in self._jobs.items() if job.is_finished and job.expires <= now]:
            del self._jobs[key]


def progress_of(job: Job) -> dict[str, Any]:
    """The job's progress fields (read on the event loop while the engine writes them in its thread)."""
    progress = job.progress
    fraction = 1.0 if job.state == "done" else min(1.0, max(0.0, progress.fraction))
    return {"progress": fraction, "done": round(progress.done, 3), "total": progress.total, "unit": progress.unit or None}
