"""Refuse an analysis while the queue is full before a byte of its upload is read; ``Prefer: respond-async`` asks for a job instead.

An analysis POST's options (``mode`` among them) come in its multipart body, after the upload, so nothing in the body
can decide whether it may wait. :class:`EarlyRefusalMiddleware` answers ``POST /api/v1/analyze`` and
``POST /api/v1/evaluate`` from their headers alone: while every running slot and queue place of the gate is taken
(:attr:`~app.web.admission.Admission.full`; the models share one gate, :mod:`app.web.services`), the request gets
503 ``overloaded`` with ``Retry-After`` and ``Connection: close``, and its upload is never read (h11 discards it with
the connection).

The standard way for a request to say it may be answered later is the ``Prefer: respond-async`` header (RFC 7240).
A request carrying it passes while the job store has room (:meth:`~app.web.jobs.JobStore.check_room`), and a form that
leaves ``mode`` at its default ``auto`` runs as a job (:func:`asked_mode`); its 202 says ``Preference-Applied:
respond-async`` (:func:`with_preference_applied`). An explicit ``mode`` in the form wins over the header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated

from fastapi import Header
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.error_codes import ErrorCode
from app.web.admission import Overloaded
from app.web.api_paths import API_PREFIX
from app.web.jobs import JobMode, JobStore
from app.web.security.refusal import reject
from app.web.services import ModelServices
from app.web.settings import env_name

__all__ = [
    "ANALYSIS_PATHS",
    "PREFER_HEADER",
    "RESPOND_ASYNC",
    "EarlyRefusalMiddleware",
    "PreferHeader",
    "asked_mode",
    "prefers_async",
    "with_preference_applied",
]

PREFER_HEADER = "Prefer"
RESPOND_ASYNC = "respond-async"
ANALYSIS_PATHS = frozenset({f"{API_PREFIX}/analyze", f"{API_PREFIX}/evaluate"})
PreferHeader = Annotated[
    list[str] | None,
    Header(
        alias=PREFER_HEADER,
        description=f"`{RESPOND_ASYNC}` (RFC 7240): run the analysis as a job (202, `Preference-Applied: {RESPOND_ASYNC}`) when `mode` "
        "is left at auto, and let the request in while the queue is full, when the server keeps room for another job; without it, "
        "a request that arrives while the queue is full gets 503 `overloaded` before its upload is read.",
    ),
]


def prefers_async(values: Iterable[str] | None) -> bool:
    """Whether the ``Prefer`` header values (RFC 7240: comma-separated preferences, each ``token[=value][; params]``) ask for ``respond-async``."""
    for value in values or ():
        for preference in value.split(","):
            token = preference.split(";", 1)[0].split("=", 1)[0].strip().lower()
            if token == RESPOND_ASYNC:
                return True
    return False


def asked_mode(mode: JobMode, prefer: Iterable[str] | None, jobs_enabled: bool) -> JobMode:
    """The mode a request runs in: ``job`` when it prefers ``respond-async``, its form left ``mode`` at ``auto`` and jobs are on; else ``mode``."""
    if mode == "auto" and jobs_enabled and prefers_async(prefer):
        return "job"
    return mode


def with_preference_applied(response: Response, prefer: Iterable[str] | None) -> Response:
    """``response`` (a request's 202 job answer) with ``Preference-Applied: respond-async`` when the request asked for it."""
    if prefers_async(prefer):
        response.headers["Preference-Applied"] = RESPOND_ASYNC
    return response


def _job_room(jobs: JobStore) -> bool:
    if not jobs.enabled:
        return False
    try:
        jobs.check_room()
    except Overloaded:
        return False
    return True


def _path(scope: Scope) -> str:
    path = str(scope["path"])
    root = str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


class EarlyRefusalMiddleware:
    """Answer an analysis POST 503 ``overloaded`` from its headers while the gate's queue is full (see the module's docstring).

    Args:
        app: The wrapped ASGI app.
        services: The served models (``None`` while they load: then every request passes, and the route answers 503 ``not_ready``).
    """

    def __init__(self, app: ASGIApp, services: Callable[[], ModelServices | None]) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = self.services() if scope["type"] == "http" and scope["method"] == "POST" and _path(scope) in ANALYSIS_PATHS else None
        if services is None or not services.admission.full:
            await self.app(scope, receive, send)
            return
        jobs_room = _job_room(services.jobs)
        if jobs_room and prefers_async(Headers(scope=scope).getlist(PREFER_HEADER)):
            await self.app(scope, receive, send)
            return
        admission = services.admission
        if not services.jobs.enabled:
            advice = "retry after the Retry-After header's seconds"
        elif jobs_room:
            advice = f"retry after the Retry-After header's seconds, or send the header `{PREFER_HEADER}: {RESPOND_ASYNC}` to run it as a job (202)"
        else:
            advice = (
                f"retry after the Retry-After header's seconds (`{PREFER_HEADER}: {RESPOND_ASYNC}`, which runs it as a job, "
                f"needs room for a job too: every one of the {services.jobs.max_jobs} kept is unfinished, {env_name('max_jobs')})"
            )
        message = f"{admission.busy_message()}; the request was refused before its upload was read: {advice}"
        await reject(scope, send, ErrorCode.OVERLOADED, message, headers={"Retry-After": str(admission.retry_after())})
