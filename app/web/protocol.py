"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for each request's head, against clients that trickle headers.

uvicorn bounds the head's size (``h11_max_incomplete_event_size``) and closes idle keep-alive connections
(``timeout_keep_alive``), but a client that sends a byte of headers now and then keeps its connection
open forever (each byte re-arms nothing, and the keep-alive timer is cancelled by any data). Here a timer
starts when the connection opens and again after every response; if the next request's head is not
complete when it fires, the client gets a 408 JSON error and the connection is closed. The body has its
own deadline (:class:`~app.web.limits.BodyLimitMiddleware`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

from uvicorn.protocols.http.h11_impl import H11Protocol

from app.defaults import HEADER_TIMEOUT
from app.error_codes import ErrorCode
from app.web import request_id
from app.web.errors import error_body
from app.web.settings import Settings

__all__ = ["HeaderDeadlineProtocol", "header_deadline_protocol", "uvicorn_options"]


def _timeout_response(seconds: float) -> bytes:
    message = f"the request's headers did not arrive within {seconds:g} s; the connection is closed"
    status = HTTPStatus(ErrorCode.HEADER_TIMEOUT.status)
    body = json.dumps(error_body(ErrorCode.HEADER_TIMEOUT, message)).encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"{request_id.HEADER.lower()}: {request_id.new_id()}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class HeaderDeadlineProtocol(H11Protocol):
    """:class:`~uvicorn.protocols.http.h11_impl.H11Protocol` that closes connections whose request head takes over ``header_timeout`` seconds."""

    header_timeout: float = HEADER_TIMEOUT
    on_header_timeout: Callable[[], None] | None = None
    _head_timer: asyncio.TimerHandle | None = None

    def _awaiting_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._awaiting_head() and not self.transport.is_closing():
            self.transport.write(_timeout_response(self.header_timeout))
            self.transport.close()
            if self.on_header_timeout is not None:
                self.on_header_timeout()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the first request's head deadline.

        ``transport`` is typed as :class:`asyncio.Protocol` declares it; uvicorn hands a stream transport (its own
        ``H11Protocol`` narrows the parameter to :class:`asyncio.Transport`), which the cast states.
        """
        super().connection_made(cast(asyncio.Transport, transport))
        self._arm()

    def handle_events(self) -> None:
        """Stop the deadline once a request's head is complete."""
        super().handle_events()
        if not self._awaiting_head():
            self._disarm()

    def on_response_complete(self) -> None:
        """Start the next request's head deadline."""
        super().on_response_complete()
        if self._awaiting_head() and not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the timer with the connection."""
        self._disarm()
        super().connection_lost(exc)


def header_deadline_protocol(seconds: float, on_timeout: Callable[[], None] | None = None) -> type[HeaderDeadlineProtocol]:
    """A :class:`HeaderDeadlineProtocol` class whose head deadline is ``seconds``, for ``uvicorn.run(http=...)``.

    ``on_timeout`` is called (on the event loop) each time a connection is closed for a late head, e.g. to count it.
    """
    callback = staticmethod(on_timeout) if on_timeout is not None else None
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": seconds, "on_header_timeout": callback})


def uvicorn_options(settings: Settings, on_header_timeout: Callable[[], None] | None = None) -> dict[str, Any]:
    """The slow-client limits of ``settings`` as ``uvicorn.run``/``uvicorn.Config`` keyword arguments.

    ``http``: this module's protocol (head deadline ``header_timeout``, then ``on_header_timeout()``);
    ``timeout_keep_alive``: idle keep-alive connections are closed; ``h11_max_incomplete_event_size``: a longer
    request head is refused; ``access_log``: off, the app writes its own JSON line per request (:mod:`app.web.access_log`).
    """
    return {
        "http": header_deadline_protocol(settings.header_timeout, on_header_timeout),
        "timeout_keep_alive": settings.keep_alive_timeout,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "access_log": False,
    }
