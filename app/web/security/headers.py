"""Security headers on every response: a same-origin Content-Security-Policy, no sniffing, no referrer, no framing.

:data:`SECURITY_HEADERS` is the one list: the app's responses get it from :class:`SecurityHeadersMiddleware` (and
:func:`secure_server_errors`), the answers the HTTP layer writes itself (408, 400, 431) from
:func:`app.web.protocol.error_response_bytes`.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP_DIRECTIVES", "SECURITY_HEADERS", "SecurityHeadersMiddleware", "content_security_policy", "secure_server_errors"]

CSP_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data: blob:",
    "connect-src": "'self' data:",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def content_security_policy(script_src: str = "'self'") -> str:
    """The ``Content-Security-Policy`` value: same-origin scripts, styles, fetches; no inline code, plugins or framing.

    Args:
        script_src: Sources of scripts, e.g. ``'self' 'sha256-...'`` for a page with one known inline script.
    """
    return "; ".join(f"{name} {script_src if name == 'script-src' else value}" for name, value in CSP_DIRECTIVES.items())


SECURITY_HEADERS = {
    "Content-Security-Policy": content_security_policy(),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeadersMiddleware:
    """Add :data:`SECURITY_HEADERS` to every response that does not set its own (``/docs`` sets its own CSP)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def secure_server_errors(app: FastAPI) -> None:
    """Give the 500 answer the security headers too: Starlette sends it from outside every middleware.

    Call after the error handlers are installed and before the app first runs.
    """
    handler = app.exception_handlers[Exception]

    async def with_headers(request: Request, exc: Exception) -> Response:
        response = handler(request, exc)
        response = await response if inspect.isawaitable(response) else response
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    app.exception_handlers[Exception] = with_headers
