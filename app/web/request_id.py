"""Request ids: the client's ``X-Request-ID`` when it is a sane token, else a fresh one; echoed on every response."""

from __future__ import annotations

import inspect
import re
import uuid

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import Scope

__all__ = ["HEADER", "MAX_LENGTH", "accepted_id", "new_id", "request_id_of", "with_request_id_on_server_errors"]

HEADER = "X-Request-ID"
MAX_LENGTH = 128
_TOKEN = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")
_SCOPE_KEY = "request_id"


def new_id() -> str:
    """A fresh request id: 32 hex digits (uuid4)."""
    return uuid.uuid4().hex


def accepted_id(presented: str | None) -> str:
    """The id a request goes by: ``presented`` when it is 1 to 128 of ``A-Z a-z 0-9 . _ : -``, otherwise a new one.

    Anything else (spaces, quotes, control characters, an over-long value) is replaced rather than cleaned,
    so a logged id is always either exactly what the client sent or ours.
    """
    if presented is not None and _TOKEN.fullmatch(presented):
        return presented
    return new_id()


def remember(scope: Scope, request_id: str) -> None:
    """Keep the request's id in its ASGI scope (as ``request.state.request_id``)."""
    scope.setdefault("state", {})[_SCOPE_KEY] = request_id


def request_id_of(scope: Scope) -> str | None:
    """The id :func:`remember` kept in ``scope``, if any."""
    state = scope.get("state")
    value = state.get(_SCOPE_KEY) if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


def with_request_id_on_server_errors(app: FastAPI) -> None:
    """Give the 500 answer the request id too: Starlette sends it from outside every middleware.

    Call after the error handlers are installed and before the app first runs.
    """
    handler = app.exception_handlers[Exception]

    async def with_id(request: Request, exc: Exception) -> Response:
        response = handler(request, exc)
        response = await response if inspect.isawaitable(response) else response
        request_id = request_id_of(request.scope)
        if request_id is not None:
            response.headers.setdefault(HEADER, request_id)
        return response

    app.exception_handlers[Exception] = with_id
