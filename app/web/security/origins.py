"""No cross-origin writes: a POST from a page of another origin is refused before its body is read."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.error_codes import ErrorCode
from app.web.security.refusal import SAFE_METHODS, quoted, reject
from app.web.settings import env_name

__all__ = ["CrossOriginWriteMiddleware"]


class CrossOriginWriteMiddleware:
    """Answer 403 to a POST (any unsafe method) sent by a page of another origin, before its body is read.

    CORS only stops a foreign page from reading the answer; a "simple" multipart POST would still be computed.
    A request is refused when its ``Origin`` is neither this server's own (the ``Host`` it was sent to) nor listed
    in ``allowed``, or when the browser marks it ``Sec-Fetch-Site: cross-site`` and its origin is not listed.
    Clients that send no ``Origin`` (curl, scripts) pass.

    Args:
        app: The wrapped ASGI app.
        allowed: Origins allowed by CORS (``Settings.cors_origins``); ``*`` allows every origin.
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(origin.rstrip("/").lower() for origin in allowed)

    def refuses(self, headers: Headers) -> str | None:
        """The origin to name in the refusal, or ``None`` when the request may proceed."""
        origin = headers.get("origin")
        listed = "*" in self.allowed or (origin is not None and origin.rstrip("/").lower() in self.allowed)
        if listed:
            return None
        if headers.get("sec-fetch-site", "").lower() == "cross-site":
            return origin or "(another site)"
        if origin is None:
            return None
        own = urlsplit(origin.lower()).netloc if origin.lower().startswith(("http://", "https://")) else None
        return None if own and own == headers.get("host", "").strip().lower() else origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        origin = self.refuses(Headers(scope=scope))
        if origin is None:
            await self.app(scope, receive, send)
            return
        message = f"requests from the web origin {quoted(origin)} are refused; its operator can allow it with {env_name('cors_origins')}"
        await reject(scope, send, ErrorCode.FORBIDDEN_ORIGIN, message)
