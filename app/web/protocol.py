"""uvicorn's HTTP/1.1 protocol (h11), made strict about the request head, and careful when it closes a connection early.

* **Deadline.** uvicorn closes idle keep-alive connections (``timeout_keep_alive``), but a client that sends a byte of
  headers now and then keeps its connection open forever. Here a timer starts when the connection opens and again after
  every response; if the next request's head is not complete when it fires, the client gets 408 ``header_timeout``.
* **Size and framing.** Each head is checked before h11 parses it (:mod:`app.web.framing`): over ``max_header_bytes``,
  in one read or many, 431 ``header_too_large``; ``Transfer-Encoding`` with ``Content-Length``, or either twice, 400
  ``bad_request`` before the app runs.
* **Lingering close.** An answer given before the request was read to its end (a 503 from a full queue, a 413, a 401,
  this layer's own 431 or 400) ends with ``Connection: close``. Closing a socket that still receives makes the kernel send a reset, which can wipe
  the answer from the client's buffer before it reads it (an asynchronous httpx client then reports a ``ReadError``, not
  the 503). So such a connection is half-closed after the answer (the client reads it, then end of stream), what still
  arrives is read and dropped (never parsed or kept), and it is closed once the client closes its side or after
  :data:`LINGER_SECONDS`, as Go's ``net/http`` and nginx do.

Every answer this layer writes itself (408, 431, 400, and the 400 of a request h11 cannot parse, which uvicorn sends as
plain text) is the app's JSON error shape with an ``X-Request-ID``, the security headers of app responses
(:data:`~app.web.security.headers.SECURITY_HEADERS`) and ``Connection: close``; then the connection is closed. The body's
own deadline is :class:`~app.web.limits.BodyLimitMiddleware`'s.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from app.defaults import HEADER_TIMEOUT, MAX_HEADER_BYTES
from app.error_codes import ErrorCode
from app.web import request_id
from app.web.errors import error_body
from app.web.framing import HeadRefused, StrictHeadConnection
from app.web.security.headers import SECURITY_HEADERS
from app.web.settings import Settings

__all__ = ["LINGER_SECONDS", "StrictHttpProtocol", "error_response_bytes", "strict_protocol", "uvicorn_options"]

Refusal = Callable[[str], None]
LINGER_SECONDS = 2.0
_CLIENT_DONE = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)
_MESSAGE_LIMIT = 200


def error_response_bytes(code: ErrorCode, message: str, rid: str | None = None) -> bytes:
    """A whole HTTP/1.1 error response: ``code``'s status, the JSON error body, the request id, the security headers, ``Connection: close``."""
    status = HTTPStatus(code.status)
    body = json.dumps(error_body(code, message)).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body)), request_id.HEADER.lower(): rid or request_id.new_id()}
    headers.update((name.lower(), value) for name, value in SECURITY_HEADERS.items())
    headers["connection"] = "close"
    head = f"HTTP/1.1 {status.value} {status.phrase}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"{head}\r\n".encode() + body


class _CycleTransport:
    """The transport as a request's cycle uses it (``write``, ``is_closing``, ``close``), with the protocol's lingering close."""

    def __init__(self, protocol: StrictHttpProtocol) -> None:
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        self.protocol.transport.write(data)

    def is_closing(self) -> bool:
        return self.protocol.closing()

    def close(self) -> None:
        self.protocol.close_after_answer()


class StrictHttpProtocol(H11Protocol):
    """:class:`~uvicorn.protocols.http.h11_impl.H11Protocol` with a head deadline, strict heads and a lingering close (see the module)."""

    header_timeout: float = HEADER_TIMEOUT
    max_header_bytes: int = MAX_HEADER_BYTES
    on_refusal: Refusal | None = None
    _head_timer: asyncio.TimerHandle | None = None
    _lingering: asyncio.TimerHandle | None = None

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any], _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn = StrictHeadConnection(self.max_header_bytes, config.h11_max_incomplete_event_size or self.max_header_bytes)

    def _awaiting_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def closing(self) -> bool:
        """Whether the connection is closing or lingering (nothing more is written to it)."""
        return self.transport.is_closing() or self._lingering is not None

    def close_after_answer(self) -> None:
        """Close the connection after an answer; while the client may still be sending (a head or a body), linger first."""
        transport = self.transport
        if self.closing() or self.conn.their_state in _CLIENT_DONE or not transport.can_write_eof():
            transport.close()
            return
        self._disarm()
        transport.write_eof()
        transport.resume_reading()
        self._lingering = self.loop.call_later(LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; while lingering, drop it."""
        if self._lingering is None:
            super().data_received(data)

    def _refuse(self, code: ErrorCode, message: str, rid: str | None = None) -> None:
        """Write ``code``'s JSON answer, close the connection and report the refusal."""
        self._disarm()
        if self.closing():
            return
        self.transport.write(error_response_bytes(code, message, rid))
        self.close_after_answer()
        if self.on_refusal is not None:
            self.on_refusal(str(code))

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._awaiting_head():
            seconds = self.header_timeout
            self._refuse(ErrorCode.HEADER_TIMEOUT, f"the request's headers did not arrive within {seconds:g} s; the connection is closed")

    def send_400_response(self, msg: str) -> None:
        """Answer a request head h11 refused (or :class:`~app.web.framing.StrictHeadConnection` did) in the JSON error shape, and close."""
        refused = cast(StrictHeadConnection, self.conn).refused
        if isinstance(refused, HeadRefused):
            self._refuse(refused.code, str(refused), refused.request_id)
            return
        detail = str(refused)[:_MESSAGE_LIMIT] if refused is not None else msg
        self._refuse(ErrorCode.BAD_REQUEST, f"the request is not valid HTTP/1.1 ({detail}); the connection is closed")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the first request's head deadline.

        ``transport`` is typed as :class:`asyncio.Protocol` declares it; uvicorn hands a stream transport (its own
        ``H11Protocol`` narrows the parameter to :class:`asyncio.Transport`), which the cast states.
        """
        super().connection_made(cast(asyncio.Transport, transport))
        self._arm()

    def handle_events(self) -> None:
        """Give a new request's cycle the lingering close; stop the deadline once a request's head is complete."""
        super().handle_events()
        if self.cycle is not None and not isinstance(self.cycle.transport, _CycleTransport):
            self.cycle.transport = cast(asyncio.Transport, _CycleTransport(self))
        if not self._awaiting_head():
            self._disarm()

    def on_response_complete(self) -> None:
        """Start the next request's head deadline."""
        super().on_response_complete()
        if self._awaiting_head() and not self.closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the timers with the connection."""
        self._disarm()
        if self._lingering is not None:
            self._lingering.cancel()
        super().connection_lost(exc)


def strict_protocol(header_timeout: float, max_header_bytes: int, on_refusal: Refusal | None = None) -> type[StrictHttpProtocol]:
    """A :class:`StrictHttpProtocol` class with these limits, for ``uvicorn.run(http=...)``.

    ``on_refusal(code)`` is called (on the event loop) with the error code of each answer the protocol writes itself
    (``header_timeout``, ``header_too_large``, ``bad_request``), e.g. to count it.
    """
    callback = staticmethod(on_refusal) if on_refusal is not None else None
    attributes = {"header_timeout": header_timeout, "max_header_bytes": max_header_bytes, "on_refusal": callback}
    return type("StrictHttpProtocol", (StrictHttpProtocol,), attributes)


def uvicorn_options(settings: Settings, on_refusal: Refusal | None = None) -> dict[str, Any]:
    """The slow-client and framing limits of ``settings`` as ``uvicorn.run``/``uvicorn.Config`` keyword arguments.

    ``http``: this module's protocol (head deadline ``header_timeout``, head size ``max_header_bytes``, strict framing;
    ``on_refusal(code)`` after each of its own answers); ``timeout_keep_alive``: idle keep-alive connections are closed;
    ``h11_max_incomplete_event_size``: h11's own bound; ``access_log``: off, the app writes its own JSON line per request
    (:mod:`app.web.access_log`).
    """
    return {
        "http": strict_protocol(settings.header_timeout, settings.max_header_bytes, on_refusal),
        "timeout_keep_alive": settings.keep_alive_timeout,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "access_log": False,
    }
