"""Request heads that play tricks with HTTP/1.1 framing or size, each with the answer the server must give.

Every trick is sent as raw bytes on a fresh connection. A trick with a ``smuggled`` request carries a complete second
request after what a front proxy that trusts ``Content-Length`` would take as the first one's body: the server must
answer the first (with ``status``) and close, never the second.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONTROLS", "HEAD_LIMIT", "SMUGGLED", "TRICKS", "Trick", "head_of"]

HEAD_LIMIT = 16 * 1024
SMUGGLED = b"GET /api/v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n"


@dataclass(frozen=True)
class Trick:
    """One raw request and the error the server must answer with (or 200 for a control)."""

    name: str
    raw: bytes
    status: int
    code: str | None
    smuggled: bool = False


def _post(headers: str, body: bytes, line_end: str = "\r\n") -> bytes:
    head = f"POST /api/v1/analyze HTTP/1.1{line_end}Host: localhost{line_end}"
    return (head + "".join(f"{h}{line_end}" for h in headers.split("|")) + line_end).encode() + body


def head_of(size: int) -> bytes:
    """A complete ``GET /healthz`` head of exactly ``size`` bytes (the blank line included), padded with ``X-Pad-<i>`` headers."""
    head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
    pad = 0
    while len(head) + 2 < size:
        room = size - len(head) - 2 - len(f"X-Pad-{pad}: \r\n")
        if room < 1:
            raise ValueError(f"no head of exactly {size} bytes")
        value = "a" * (room if room < 1020 else 1000)
        head += f"X-Pad-{pad}: {value}\r\n".encode()
        pad += 1
    head += b"\r\n"
    if len(head) != size:
        raise ValueError(f"no head of exactly {size} bytes")
    return head


_CHUNKED_THEN_SMUGGLED = b"0\r\n\r\n" + SMUGGLED

TRICKS = [
    Trick("te-then-cl", _post(f"Transfer-Encoding: chunked|Content-Length: {len(_CHUNKED_THEN_SMUGGLED)}", _CHUNKED_THEN_SMUGGLED), 400, "bad_request", True),
    Trick("cl-then-te", _post(f"Content-Length: {len(_CHUNKED_THEN_SMUGGLED)}|Transfer-Encoding: chunked", _CHUNKED_THEN_SMUGGLED), 400, "bad_request", True),
    Trick("te-cl-small", _post("Content-Length: 4|Transfer-Encoding: chunked", _CHUNKED_THEN_SMUGGLED), 400, "bad_request", True),
    Trick("te-cl-mixed-case", _post("tRANSFER-eNCODING: chunked|content-LENGTH: 5", _CHUNKED_THEN_SMUGGLED), 400, "bad_request", True),
    Trick("te-cl-bare-lf", _post("Transfer-Encoding: chunked|Content-Length: 5", _CHUNKED_THEN_SMUGGLED, line_end="\n"), 400, "bad_request", True),
    Trick("cl-twice-equal", _post("Content-Length: 5|Content-Length: 5", b"hello" + SMUGGLED), 400, "bad_request", True),
    Trick("cl-twice-different", _post("Content-Length: 5|Content-Length: 0", b"hello" + SMUGGLED), 400, "bad_request", True),
    Trick("cl-list", _post("Content-Length: 5, 5", b"hello" + SMUGGLED), 400, "bad_request", True),
    Trick("te-twice", _post("Transfer-Encoding: chunked|Transfer-Encoding: chunked", _CHUNKED_THEN_SMUGGLED), 400, "bad_request", True),
    Trick("te-not-chunked", _post("Transfer-Encoding: gzip", b"hello"), 400, "bad_request"),
    Trick("te-folded-into-cl", _post("Transfer-Encoding: chunked| Content-Length: 5", _CHUNKED_THEN_SMUGGLED), 400, "bad_request", True),
    Trick("cl-not-a-number", _post("Content-Length: 5x", b"hello"), 400, "bad_request"),
    Trick("header-without-colon", b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nNoColonHere\r\n\r\n", 400, "bad_request"),
    Trick("garbage-request-line", b"HELLO THERE\r\n\r\n", 400, "bad_request"),
    Trick("head-over-the-limit", head_of(100 * 1024), 431, "header_too_large"),
    Trick("head-just-over-the-limit", head_of(HEAD_LIMIT + 1), 431, "header_too_large"),
]

CONTROLS = [
    Trick("plain-get", b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n", 200, None),
    Trick("get-with-content-length-0", b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n", 200, None),
    Trick("head-at-the-limit", head_of(HEAD_LIMIT), 200, None),
]
