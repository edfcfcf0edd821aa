"""The outermost middleware: a request id on every response, and every request counted, timed and logged once.

It wraps every other middleware, so the refusals answered before the routes (400 host, 403 origin, 401 key,
413/408 body) carry the id and are counted and logged like any other answer. The error's ``code`` is read
back from the (small) JSON body of an error response, so every error in the common shape is counted by its
code without the code that raises it knowing about metrics. The one answer sent from outside, Starlette's
500, gets its id from :func:`app.web.request_id.with_request_id_on_server_errors`; here it is counted as
``internal_error``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web.access_log import RequestRecord, bound, log_request
from app.web.metrics import Metrics
from app.web.request_id import HEADER, accepted_id, remember

__all__ = ["UNMATCHED", "ObserveMiddleware", "route_template"]

UNMATCHED = "unmatched"
ERROR_BODY_LIMIT = 4096
NO_RESPONSE = 499


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template of the route that answers ``scope`` (a path that matches with another method counts), or :data:`UNMATCHED`."""
    partial: str | None = None
    for route in routes:
        match, _ = route.matches(scope)
        path = getattr(route, "path", None)
        if match is Match.NONE or not isinstance(path, str):
            continue
        template = f"{path}/{{path}}" if isinstance(route, Mount) else path
        if match is Match.FULL:
            return template
        partial = partial or template
    return partial or UNMATCHED


def error_code(status: int, content_type: str | None, body: bytes) -> str | None:
    """The ``error.code`` of an error response in the common shape, or ``None``."""
    if status < 400 or not (content_type or "").startswith("application/json") or len(body) > ERROR_BODY_LIMIT:
        return None
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


class ObserveMiddleware:
    """Give each request an id (``X-Request-ID`` in, sanitised, or a new one; always out), then count, time and log it.

    Args:
        app: The wrapped ASGI app.
        metrics: Where requests are counted.
        routes: The routes that label requests by path template, in the order the app tries them; each must have a ``path``.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = accepted_id(Headers(scope=scope).get(HEADER))
        remember(scope, request_id)
        client = scope.get("client")
        record = RequestRecord(
            request_id=request_id,
            method=scope["method"],
            path=str(scope["path"])[:200],
            route=route_template(self.routes, scope),
            client=str(client[0]) if client else None,
        )
        content_type: str | None = None
        error_body = bytearray()

        async def observed_send(message: Message) -> None:
            nonlocal content_type
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[HEADER] = request_id
                record.status = int(message["status"])
                content_type = headers.get("content-type")
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                record.bytes_out += len(chunk)
                if record.status >= 400 and len(error_body) <= ERROR_BODY_LIMIT:
                    error_body.extend(chunk)
            await send(message)

        try:
            with bound(record):
                await self.app(scope, receive, observed_send)
        except Exception:
            if record.status == 0:
                record.status, record.error = 500, "internal_error"
            raise
        finally:
            if record.status == 0:  # cancelled before any answer
                record.status, record.error = NO_RESPONSE, "no_response"
            record.duration_s = time.perf_counter() - started
            record.error = record.error or error_code(record.status, content_type, bytes(error_body))
            self.metrics.request(record.method, record.route, record.status, record.duration_s, record.error)
            log_request(record)
