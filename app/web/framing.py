"""Each request head checked before h11 parses it: its size however it arrived, and body framing that cannot be read two ways.

h11's ``max_incomplete_event_size`` only bounds a head that is still incomplete, so a 100 KiB head that arrives in one
read is parsed and served; and h11 lets ``Transfer-Encoding`` win over ``Content-Length`` and keeps the connection, so
the bytes a front proxy counted as body run here as a second request (request smuggling). :class:`StrictHeadConnection`
looks at the head in h11's buffer before h11 parses it: over ``max_head_bytes`` (in one read or many) it raises
:class:`HeadRefused` with 431 ``header_too_large``; with ambiguous framing (:func:`framing_problem`, RFC 9112 §6.1 and
§6.3) with 400 ``bad_request``. uvicorn answers any :class:`h11.RemoteProtocolError` with a 400 and closes the connection;
:mod:`app.web.protocol` makes that answer the JSON error with the right status.
"""

from __future__ import annotations

import re

import h11

from app.error_codes import ErrorCode
from app.web import request_id
from app.web.settings import env_name

__all__ = ["HeadRefused", "StrictHeadConnection", "framing_problem", "presented_id"]

_HEAD_END = re.compile(rb"\n\r?\n")  # where h11 ends a head: a blank line, CRLF or bare LF


def framing_problem(head: bytes) -> str | None:
    """What makes a complete request head's body framing ambiguous, in words; ``None`` when it is not.

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


def presented_id(head: bytes) -> str:
    """The request id of a raw head: the client's ``X-Request-ID`` when it is a sane token, else a new one."""
    wanted = request_id.HEADER.lower().encode()
    for line in head.split(b"\n")[1:]:
        name, _, value = line.rstrip(b"\r").partition(b":")
        if name.strip().lower() == wanted:
            return request_id.accepted_id(value.strip().decode("latin-1"))
    return request_id.new_id()


class HeadRefused(h11.RemoteProtocolError):
    """A request head answered with ``code`` instead of parsed (h11's base class: uvicorn then answers and closes)."""

    def __init__(self, code: ErrorCode, message: str, rid: str | None = None) -> None:
        super().__init__(message, error_status_hint=code.status)
        self.code = code
        self.request_id = rid


def _too_large(limit: int, rid: str | None = None) -> HeadRefused:
    message = (
        f"the request's line and headers are over {limit:,} bytes ({env_name('max_header_bytes')}); the connection is closed, send fewer or shorter headers"
    )
    return HeadRefused(ErrorCode.HEADER_TOO_LARGE, message, rid)


class StrictHeadConnection(h11.Connection):
    """An h11 server connection that checks each request head's size and framing before h11 parses it.

    Args:
        max_head_bytes: The largest request head (request line, headers and the blank line), however it arrived.
        max_incomplete_event_size: h11's own bound on anything incomplete in its buffer.

    Attributes:
        refused: The error that ended the connection's parsing (a :class:`HeadRefused` or h11's own), once there is one.
    """

    def __init__(self, max_head_bytes: int, max_incomplete_event_size: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)
        self.max_head_bytes = max_head_bytes
        self.refused: h11.RemoteProtocolError | None = None

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """h11's next event, after the checks of a head that is about to be parsed.

        Raises:
            HeadRefused: the head is over ``max_head_bytes`` (431) or its framing is ambiguous (400).
            h11.RemoteProtocolError: h11 cannot parse the request.
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
                raise _too_large(self.max_head_bytes)
            return
        head = buffered[: end.end()]
        if len(head) > self.max_head_bytes:
            raise _too_large(self.max_head_bytes, presented_id(head))
        problem = framing_problem(head)
        if problem is not None:
            raise HeadRefused(ErrorCode.BAD_REQUEST, f"{problem}; the connection is closed", presented_id(head))
