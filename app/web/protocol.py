"""uvicorn's HTTP/1.1 protocol (h11), made strict about the request head: a deadline, a size bound and unambiguous framing.

* **Deadline.** uvicorn closes idle keep-alive connections (``timeout_keep_alive``), but a client that sends a byte of
  headers now and then keeps its connection open forever. Here a timer starts when the connection opens and again after
  every response; if the next request's head is not complete when it fires, the client gets 408 ``header_timeout``.
* **Size.** h11's ``max_incomplete_event_size`` only bounds a head that is still incomplete, so a 100 KiB head that
  arrives in one read is parsed and served. Here the bytes of each head are counted before h11 parses it, however they
  arrived: past ``max_header_bytes`` the client gets 431 ``header_too_large``.
* **Framing.** h11 lets ``Transfer-Encoding`` win over ``Content-Length`` and keeps the connection, so the bytes a front
  proxy counted as body run here as a second request. Here a head with both, or with two ``Content-Length`` (even equal,
  or one holding a list) or two ``Transfer-Encoding`` headers, gets 400 ``bad_request`` (RFC 9112 §6.1) before the app runs.

Every answer this layer writes itself (those three, and the 400 of a request h11 cannot parse, which uvicorn sends as
plain text) is the app's JSON error shape with an ``X-Request-ID``, the security headers of app responses
(:data:`~app.web.security.headers.SECURITY_HEADERS`) and ``Connection: close``; then the connection is closed. The body's
own deadline is :class:`~app.web.limits.BodyLimitMiddleware`'s.
"""

from __future__ import annotations

import asyncio
import json
import re
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
from app.web.security.headers import SECURITY_HEADERS
from app.web.settings import Settings, env_name

__all__ = ["HeadRefused", "StrictHeadConnection", "StrictHttpProtocol", "error_response_bytes", "framing_problem", "strict_protocol", "uvicorn_options"]

Refusal = Callable[[str], None]
_HEAD_END = re.compile(rb"\n\r?\n")  # h11's end of a head: a blank line, CRLF or bare LF
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


def framing_problem(head: bytes) -> str | None:
    """What makes a complete request head's body framing ambiguous (RFC 9112 §6.1, §6.3), in words; ``None`` when it is not.

    Ambiguous: ``Transfer-Encoding`` together with ``Content-Length``; ``Content-Length`` twice (even with equal values) or
    holding a comma-separated list; ``Transfer-Encoding`` twice.
    """
    lengths = encodings = 0
    for line in head.split(b"\n")[1:]:
        name, colon, value = line.rstrip(b"\r").partition(b":")
        if not colon or line[:1] in (b" ", b"\t"):
            continue
        name = name.strip().lower()
        if name == b"content-length":
            lengths += 1 + value.count(b",")
        elif name == b"transfer-encoding":
            encodings += 1
    if lengths and encodings:
        return "the request has both Transfer-Encoding and Content-Length, so its body's length is ambiguous (RFC 9112 §6.1)"
    if lengths > 1:
        return "the request has more than one Content-Length, so its body's length is ambiguous (RFC 9112 §6.3)"
    if encodings > 1:
        return "the request has more than one Transfer-Encoding header; send one, `Transfer-Encoding: chunked`"
    return None


def _presented_id(head: bytes) -> str:
    """The request id of a head (the client's ``X-Request-ID`` when it is a sane token, else a new one)."""
    for line in head.split(b"\n")[1:]:
        name, _, value = line.rstrip(b"\r").partition(b":")
        if name.strip().lower() == request_id.HEADER.lower().encode():
            return request_id.accepted_id(value.strip().decode("latin-1"))
    return request_id.new_id()


class HeadRefused(h11.RemoteProtocolError):
    """A request head this server answers with ``code`` instead of parsing it (h11's base class: uvicorn then answers and closes)."""

    def __init__(self, code: ErrorCode, message: str, rid: str | None = None) -> None:
        super().__init__(message, error_status_hint=code.status)
        self.code = code
        self.request_id = rid


class StrictHeadConnection(h11.Connection):
    """An h11 server connection that checks each request head's size and framing before h11 parses it.

    Args:
        max_head_bytes: The largest request head (request line, headers and the blank line), however it arrived.
        max_incomplete_event_size: h11's own bound on anything incomplete in its buffer.
    """

    def __init__(self, max_head_bytes: int, max_incomplete_event_size: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)
        self.max_head_bytes = max_head_bytes
        self.refused: h11.RemoteProtocolError | None = None

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """h11's next event, after the checks of a head that is about to be parsed.

        Raises:
            HeadRefused: the head is over ``max_head_bytes`` (431) or its framing is ambiguous (400).
            h11.RemoteProtocolError: h11 cannot parse the request (kept in :attr:`refused`, like the above).
        """
        try:
            if self.their_state is h11.IDLE:
                self._check_head()
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refused = exc
            raise

    def _check_head(self) -> None:
        buffered = self.trailing_data[0]
        end = _HEAD_END.search(buffered, 0, self.max_head_bytes + 1)
        if end is None:
            if len(buffered) > self.max_head_bytes:
                raise HeadRefused(ErrorCode.HEADER_TOO_LARGE, _too_large_message(self.max_head_bytes))
            return
        head = buffered[: end.end()]
        if len(head) > self.max_head_bytes:
            raise HeadRefused(ErrorCode.HEADER_TOO_LARGE, _too_large_message(self.max_head_bytes), _presented_id(head))
        problem = framing_problem(head)
        if problem is not None:
            raise HeadRefused(ErrorCode.BAD_REQUEST, f"{problem}; the connection is closed", _presented_id(head))


def _too_large_message(limit: int) -> str:
    return f"the request's line and headers are over {limit:,} bytes ({env_name('max_header_bytes')}); the connection is closed, send fewer or shorter headers"


class StrictHttpProtocol(H11Protocol):
    """:class:`~uvicorn.protocols.http.h11_impl.H11Protocol` with a head deadline, a head size bound and strict framing (see the module)."""

    header_timeout: float = HEADER_TIMEOUT
    max_header_bytes: int = MAX_HEADER_BYTES
    on_refusal: Refusal | None = None
    _head_timer: asyncio.TimerHandle | None = None

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

    def _refuse(self, code: ErrorCode, message: str, rid: str | None = None) -> None:
        """Write ``code``'s JSON answer, close the connection and report the refusal."""
        self._disarm()
        if self.transport.is_closing():
            return
        self.transport.write(error_response_bytes(code, message, rid))
        self.transport.close()
        if self.on_refusal is not None:
            self.on_refusal(str(code))

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._awaiting_head():
            seconds = self.header_timeout
            self._refuse(ErrorCode.HEADER_TIMEOUT, f"the request's headers did not arrive within {seconds:g} s; the connection is closed")

    def send_400_response(self, msg: str) -> None:
        """Answer a request head h11 refused (or :class:`StrictHeadConnection` did) in the JSON error shape, and close."""
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
