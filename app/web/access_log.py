"""One structured JSON line per request on the ``app.web.access`` logger, and the logging set-up of ``serve``.

The request's :class:`RequestRecord` lives in a context variable while the request runs, so the analysis service
can add what only it knows (model, samples, analysed pixels, queue wait, inference time) without every route
passing it along; the worker threads of an analysis see the same record (anyio copies the context into them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from uvicorn.config import LOGGING_CONFIG

__all__ = ["LOGGER", "RequestRecord", "bound", "current_record", "log_request", "serve_log_config"]

LOGGER = "app.web.access"
log = logging.getLogger(LOGGER)


@dataclass
class RequestRecord:
    """What one request's log line says. The analysis fields stay ``None`` for requests that run no analysis."""

    request_id: str
    method: str
    path: str
    route: str
    client: str | None
    status: int = 0
    duration_s: float = 0.0
    bytes_out: int = 0
    error: str | None = None
    model: str | None = None
    samples: int | None = None
    pixels: int | None = None
    queue_wait_s: float | None = None
    inference_s: float | None = None

    def line(self) -> str:
        """The record as one JSON object (``None`` fields left out), with the time it was written."""
        fields: dict[str, Any] = {"time": datetime.now(UTC).isoformat(timespec="milliseconds")}
        fields.update((key, value) for key, value in vars(self).items() if value is not None)
        fields["duration_s"] = round(self.duration_s, 6)
        for key in ("queue_wait_s", "inference_s"):
            if key in fields:
                fields[key] = round(fields[key], 6)
        return json.dumps(fields, ensure_ascii=True, separators=(",", ":"))


_current: ContextVar[RequestRecord | None] = ContextVar("request_record", default=None)


def current_record() -> RequestRecord:
    """The record of the request being served, or a detached one outside any request (its fields go nowhere)."""
    record = _current.get()
    return record if record is not None else RequestRecord(request_id="", method="", path="", route="", client=None)


@contextmanager
def bound(record: RequestRecord) -> Iterator[RequestRecord]:
    """Make ``record`` the current request's inside the block, for this task and the tasks and threads it starts."""
    token = _current.set(record)
    try:
        yield record
    finally:
        _current.reset(token)


def log_request(record: RequestRecord) -> None:
    """Write ``record``'s line at INFO."""
    if log.isEnabledFor(logging.INFO):
        log.info(record.line())


def serve_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration, plus the access lines as bare JSON on stdout and the app's own messages on stderr.

    Pass it as ``log_config`` with ``access_log=False`` (the JSON line replaces uvicorn's access line).
    """
    config: dict[str, Any] = json.loads(json.dumps(LOGGING_CONFIG))
    config["formatters"]["json_line"] = {"format": "%(message)s"}
    config["handlers"]["json_access"] = {"formatter": "json_line", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"}
    config["loggers"][LOGGER] = {"handlers": ["json_access"], "level": "INFO", "propagate": False}
    config["loggers"]["app"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
