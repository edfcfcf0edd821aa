"""The JSON of a job's status (``GET /api/v1/jobs/{job_id}``, the 202 answer that accepted it, and its server-sent events)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.web.schemas.analysis import ErrorDetail
from app.web.schemas.base import ApiModel

__all__ = ["JobStatus"]


class JobStatus(ApiModel):
    """Where a long analysis stands."""

    job_id: str = Field(description="The job's id.")
    kind: Literal["analyze", "evaluate"] = Field(description="The request it runs: POST /api/v1/analyze or /api/v1/evaluate.")
    model: str = Field(description="The served model it runs on.")
    state: Literal["queued", "running", "done", "failed", "cancelled"] = Field(
        description="queued: waiting for room (other analyses run); running; done: the result is at result_url; failed: error says why "
        "(the error the request would have answered); cancelled: DELETE asked for it, or the server shut down."
    )
    progress: float = Field(
        ge=0.0, le=1.0, description="Fraction of the analysis's network work done (sliding-window tiles, passes, sample chunks); 1 when done."
    )
    done: float = Field(ge=0.0, description="Steps of the analysis's outermost loop done, with the current one's part (e.g. 3.5 of 12 tiles).")
    total: int = Field(ge=0, description="Steps of the outermost loop (0 until the analysis starts).")
    unit: str | None = Field(description="What a step is: tile, pass, chunk, sample or row tile (null until the analysis starts).")
    work: int = Field(description="Work units: analysed pixels × passes × (samples + 1).")
    work_text: str = Field(description="The work in words.")
    created_at: float = Field(description="When it was accepted, seconds since the Unix epoch.")
    started_at: float | None = Field(description="When it began to run, or null.")
    finished_at: float | None = Field(description="When it finished, or null.")
    status_url: str = Field(description="GET: this status.")
    events_url: str = Field(description="GET: this status as server-sent events (text/event-stream), one `status` event per change until it finishes.")
    result_url: str = Field(description="GET: the answer the request would have given (200), once done; a failed job's error; 409 before.")
    error: ErrorDetail | None = Field(description="Why it failed or was cancelled, or null.")
