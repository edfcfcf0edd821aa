"""``/api/v1/jobs/{job_id}``: the status, progress, server-sent events, result and cancelling of a long analysis (:mod:`app.web.jobs`).

With API keys on, only the key that submitted a job finds it: any other key gets the 404 of an unknown id.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse, StreamingResponse

from app.error_codes import ErrorCode
from app.web.api_paths import JOBS_PATH
from app.web.deps import ServicesDep
from app.web.errors import ApiError, error_responses
from app.web.jobs import Job, progress_of
from app.web.schemas.analysis import ErrorDetail, ErrorResponse
from app.web.schemas.jobs import JobStatus
from app.web.security.api_keys import current_owner

__all__ = ["ACCEPTED", "EVENT_SECONDS", "KEEP_ALIVE_SECONDS", "accepted", "job_status", "router"]

router = APIRouter(prefix=JOBS_PATH, tags=["jobs"])

EVENT_SECONDS = 0.25
KEEP_ALIVE_SECONDS = 15.0
JobIdPath = Annotated[str, Path(description="The job_id of a 202 answer of POST /api/v1/analyze or /api/v1/evaluate.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = error_responses(ErrorCode.JOB_NOT_FOUND, ErrorCode.NOT_READY)
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": JobStatus,
        "description": "Accepted as a job (the work is over the server's budget for an immediate answer, or mode=job): the job's status; "
        "`Location` names its status URL.",
    }
}


def job_status(job: Job) -> JobStatus:
    """The status of ``job`` as the API reports it."""
    url = f"{JOBS_PATH}/{job.id}"
    error = ErrorDetail(code=job.error.code, message=job.error.message, field=job.error.field) if job.error is not None else None
    return JobStatus(
        job_id=job.id,
        kind=job.kind,
        model=job.model,
        state=job.state,
        **progress_of(job),
        work=job.work,
        work_text=job.describe,
        created_at=job.created,
        started_at=job.started,
        finished_at=job.finished,
        status_url=url,
        events_url=f"{url}/events",
        result_url=f"{url}/result",
        error=error,
    )


def accepted(job: Job) -> JSONResponse:
    """The 202 answer of a request accepted as ``job``: its status, with ``Location`` naming the status URL."""
    status = job_status(job)
    return JSONResponse(status.model_dump(mode="json"), status_code=202, headers={"Location": status.status_url})


@router.get("/{job_id}", response_model=JobStatus, responses=NOT_FOUND, summary="Status and progress of a job")
async def get_job(services: ServicesDep, job_id: JobIdPath) -> JobStatus:
    """Where the job stands: its state, the fraction of its analysis done, and the URLs of its events and result."""
    return job_status(services.jobs.get(job_id, current_owner()))


@router.delete("/{job_id}", response_model=JobStatus, responses=NOT_FOUND, summary="Cancel a job")
async def cancel_job(services: ServicesDep, job_id: JobIdPath) -> JobStatus:
    """Cancel a queued or running job: a queued one leaves the queue, a running one stops at the engine's next cancellation point
    (within one tile's or one sample chunk's time) and its state becomes `cancelled`. A finished job is left as it is. Its status."""
    jobs = services.jobs
    job = jobs.cancel(job_id, current_owner())
    if not job.is_finished:
        await job.wait_change(1.0)  # a queued job leaves at once; a running one at its next cancellation point
    return job_status(job)


@router.get(
    "/{job_id}/result",
    response_class=Response,
    responses={
        200: {
            "description": "The answer of the request the job ran: the analyze or evaluate JSON (or the NPZ of format=npz), exactly as "
            "a synchronous request answers it."
        },
        409: {"model": ErrorResponse, "description": f"`{ErrorCode.JOB_NO_RESULT}`: {ErrorCode.JOB_NO_RESULT.description}"},
        **NOT_FOUND,
    },
    summary="The result of a finished job",
)
async def job_result(services: ServicesDep, job_id: JobIdPath) -> Response:
    """The finished job's answer; for a failed job, the error the request would have answered (its status and code)."""
    job = services.jobs.get(job_id, current_owner())
    if job.answer is not None:
        return job.answer.response()
    if job.state == "failed" and job.error is not None:
        return job.error.response()
    why = "it was cancelled" if job.state == "cancelled" else f"it is still {job.state}; poll {JOBS_PATH}/{job.id} until its state is done"
    raise ApiError(ErrorCode.JOB_NO_RESULT, f"job {job.id!r} has no result: {why}", "job_id")


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-sent events: `status` events whose data is the job's "
            "status JSON, one per change (progress at most every 0.25 s), the last when it finishes; comments keep the stream alive.",
        },
        **NOT_FOUND,
    },
    summary="A job's status as server-sent events",
)
async def job_events(services: ServicesDep, job_id: JobIdPath) -> StreamingResponse:
    """Stream the job's status as `event: status` server-sent events until it is done, failed or cancelled."""
    job = services.jobs.get(job_id, current_owner())

    async def events() -> AsyncIterator[str]:
        last, sent = "", time.monotonic()
        while True:
            data = job_status(job).model_dump_json()
            if data != last:
                yield f"event: status\ndata: {data}\n\n"
                last, sent = data, time.monotonic()
            elif time.monotonic() - sent > KEEP_ALIVE_SECONDS:
                yield ": keep-alive\n\n"
                sent = time.monotonic()
            if job.is_finished:
                return
            await job.wait_change(EVENT_SECONDS)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
