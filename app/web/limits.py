"""An ASGI middleware that caps the request body while it streams in."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web.errors import error_response


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` once a request body passes the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")
        self.code = "body_too_large"


def _limit_message(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes ({limit / 2**20:.1f} MiB); send a smaller file"


class BodyLimitMiddleware:
    """Reject bodies over ``max_bytes`` with 413 without buffering them.

    A ``Content-Length`` over the limit is rejected before any of the body is
    read. Otherwise (chunked uploads) the bytes of every
    ``http.request`` message are counted as the app reads them; past the
    limit, ``receive`` raises :class:`BodyTooLarge`, whatever the app was
    about to answer is dropped and a 413 is sent instead. The connection is
    closed afterwards, so the rest of the upload is never read.

    Args:
        app: The wrapped ASGI app.
        max_bytes: The largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, scope: Scope, send: Send, status: int = 413, code: str = "body_too_large", message: str | None = None) -> None:
        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        response = error_response(status, code, message or _limit_message(self.max_bytes), headers={"Connection": "close"})
        await response(scope, no_body, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await self._reject(scope, send, 400, "bad_request", f"Content-Length must be a whole number, got {declared!r}")
                return
            if int(declared) > self.max_bytes:
                await self._reject(scope, send)
                return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await self._reject(scope, send)
