"""An ASGI middleware that caps the request body, in size and in time, while it streams in."""

from __future__ import annotations

import time

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.error_codes import ErrorCode
from app.web.errors import error_response
from app.web.settings import env_name


class BodyRefused(StarletteHTTPException):
    """Raised from ``receive`` once a request body passes a limit; the middleware answers ``code`` instead of the app."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code.status, message)
        self.code = code


def _limit_message(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes ({limit / 2**20:.1f} MiB); send a smaller file"


def _timeout_message(seconds: float) -> str:
    return f"the request body did not arrive within {seconds:g} s ({env_name('body_timeout')}); the connection is closed, send it faster or smaller"


class BodyLimitMiddleware:
    """Reject bodies over ``max_bytes`` with 413, and bodies not complete within ``timeout`` seconds with 408, without buffering them.

    A ``Content-Length`` over the limit is rejected before any of the body is read. Otherwise the
    bytes of every ``http.request`` message are counted as the app reads them, and every wait for the
    next one is bounded by what is left of the body's deadline (``timeout`` seconds from when the
    request's headers were in). Past either limit, ``receive`` raises :class:`BodyRefused`, whatever the
    app was about to answer is dropped and the 413 or 408 is sent instead, with ``Connection: close``,
    so the rest of the upload is never read. Once the body is complete, ``receive`` is passed through
    (disconnect polling is not timed).

    Args:
        app: The wrapped ASGI app.
        max_bytes: The largest body accepted.
        timeout: Seconds the whole body may take to arrive.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float = float("inf")) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def _reject(self, scope: Scope, send: Send, code: ErrorCode, message: str) -> None:
        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        response = error_response(code, message, headers={"Connection": "close"})
        await response(scope, no_body, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await self._reject(scope, send, ErrorCode.BAD_REQUEST, f"Content-Length must be a whole number, got {declared!r}")
                return
            if int(declared) > self.max_bytes:
                await self._reject(scope, send, ErrorCode.BODY_TOO_LARGE, _limit_message(self.max_bytes))
                return
        deadline = time.monotonic() + self.timeout
        received = 0
        complete = False
        refused: BodyRefused | None = None
        started = False

        async def limited_receive() -> Message:
            nonlocal received, complete, refused
            if complete:
                return await receive()
            with anyio.move_on_after(deadline - time.monotonic()) as waited:
                message = await receive()
            if waited.cancelled_caught:
                refused = BodyRefused(ErrorCode.BODY_TIMEOUT, _timeout_message(self.timeout))
                raise refused
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    refused = BodyRefused(ErrorCode.BODY_TOO_LARGE, _limit_message(self.max_bytes))
                    raise refused
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused is not None and not started:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if refused is None or started:
                raise
        if refused is not None and not started:
            await self._reject(scope, send, refused.code, str(refused.detail))
