"""How a guard refuses a request: the common JSON error, sent before the request body is read."""

from __future__ import annotations

from starlette.types import Message, Scope, Send

from app.error_codes import ErrorCode
from app.web.errors import error_response

__all__ = ["SAFE_METHODS", "quoted", "reject"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def reject(scope: Scope, send: Send, code: ErrorCode, message: str, headers: dict[str, str] | None = None, field: str | None = None) -> None:
    """Answer ``code`` with ``message`` without reading the body; an unsafe method's connection is closed, its upload unread.

    Args:
        scope: The request's ASGI scope.
        send: The ASGI send channel.
        code: The error code; the answer's status is ``code.status``.
        message: What went wrong and how to fix it.
        headers: Extra response headers, e.g. ``WWW-Authenticate``.
        field: The request field at fault, if any.
    """

    async def no_body() -> Message:
        return {"type": "http.disconnect"}

    extra = dict(headers or {})
    if scope.get("method", "GET") not in SAFE_METHODS:
        extra["Connection"] = "close"  # the unread upload is never drained
    await error_response(code, message, field, headers=extra)(scope, no_body, send)


def quoted(value: str, limit: int = 100) -> str:
    """``value`` quoted for a message, cut at ``limit`` characters (it comes from the client)."""
    return repr(value if len(value) <= limit else value[:limit] + "…")
