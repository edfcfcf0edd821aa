"""Strict HTTP/1.1 framing and head limits, against a real uvicorn server run with ``serve``'s options, over raw sockets.

Each trick of :mod:`framing_corpus` goes on a fresh connection; the server must answer it once, in the JSON error shape
with a request id and the security headers, and close the connection without answering a request smuggled behind it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from framing_corpus import CONTROLS, HEAD_LIMIT, SMUGGLED, TRICKS, Trick, head_of
from test_web_admission import ServeServer
from webutil import web_settings

from app.web.request_id import HEADER
from app.web.security.headers import SECURITY_HEADERS

HEADER_TIMEOUT = 1.0
READ_LIMIT = 5.0


@pytest.fixture(scope="module")
def strict(tiny_bundle_dir: Path) -> Iterator[ServeServer]:
    """A server with ``serve``'s protocol: a 1 s head deadline and the default 16 KiB head limit."""
    server = ServeServer(web_settings(tiny_bundle_dir, header_timeout=HEADER_TIMEOUT, max_header_bytes=HEAD_LIMIT)).start()
    yield server
    server.stop()


@dataclass
class Reply:
    """One HTTP response read off the wire."""

    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        """The error of a response in the common JSON shape."""
        assert self.headers["content-type"].startswith("application/json"), self.headers
        error = json.loads(self.body)["error"]
        assert isinstance(error["message"], str) and len(error["message"]) > 10
        return dict(error)


def parse_replies(data: bytes) -> tuple[list[Reply], bytes]:
    """The complete responses at the start of ``data`` (each framed by its Content-Length), and the bytes left over."""
    replies: list[Reply] = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        if len(rest) < length:
            break
        replies.append(Reply(int(lines[0].split(" ")[1]), headers, rest[:length]))
        data = rest[length:]
    return replies, data


def read_until_closed(sock: socket.socket, limit: float = READ_LIMIT) -> tuple[bytes, bool]:
    """Everything the server sends within ``limit`` s, and whether it closed the connection."""
    received = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            return received, True
        if not data:
            return received, True
        received += data
    return received, False


def exchange(server: ServeServer, raw: bytes) -> tuple[list[Reply], bytes, bool]:
    """Send ``raw`` in one write on a fresh connection; the replies, the bytes after them, whether the server closed."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(raw)
        received, closed = read_until_closed(sock)
    replies, rest = parse_replies(received)
    return replies, rest, closed


def counted(server: ServeServer, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for metric in server.app.state.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def assert_protocol_answer(reply: Reply, status: int, code: str) -> dict[str, Any]:
    """An answer the protocol wrote itself: status, JSON error, request id, every security header, Connection: close."""
    assert reply.status == status, (reply.status, reply.body)
    error = reply.error()
    assert error["code"] == code, error
    assert len(reply.headers[HEADER.lower()]) >= 1
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers[name.lower()] == value, name
    assert reply.headers["connection"] == "close"
    return error


@pytest.mark.parametrize("trick", TRICKS, ids=lambda t: t.name)
def test_every_trick_is_answered_once_in_json_and_closed(strict: ServeServer, trick: Trick) -> None:
    answered, refused = counted(strict, "segu_http_requests_total"), counted(strict, "segu_rejections_total", reason=str(trick.code))
    replies, rest, closed = exchange(strict, trick.raw)
    assert len(replies) == 1 and rest == b"", f"{len(replies)} replies, then {rest[:80]!r}"
    assert trick.code is not None
    assert_protocol_answer(replies[0], trick.status, trick.code)
    assert closed, "the connection was left open"
    assert counted(strict, "segu_http_requests_total") == answered, "the app ran the request"
    assert counted(strict, "segu_rejections_total", reason=trick.code) == refused + 1


@pytest.mark.parametrize("trick", CONTROLS, ids=lambda t: t.name)
def test_well_framed_requests_are_served_and_kept_alive(strict: ServeServer, trick: Trick) -> None:
    """The harness can tell: a plain request is answered 200 and the connection stays open for the next one."""
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        sock.sendall(trick.raw + SMUGGLED)
        received, closed = read_until_closed(sock, limit=HEADER_TIMEOUT / 2)
    replies, _ = parse_replies(received)
    assert [reply.status for reply in replies] == [trick.status, 200] and not closed


def test_te_with_cl_ends_the_connection_before_the_smuggled_request(strict: ServeServer) -> None:
    """The attacker's report: TE + CL used to answer 422 for the chunked body, then 200 for the bytes behind it."""
    trick = next(t for t in TRICKS if t.name == "te-then-cl")
    replies, rest, closed = exchange(strict, trick.raw)
    error = assert_protocol_answer(replies[0], 400, "bad_request")
    assert "Transfer-Encoding and Content-Length" in error["message"]
    assert len(replies) == 1 and rest == b"" and closed


def test_a_refused_head_keeps_the_clients_request_id(strict: ServeServer) -> None:
    trick = next(t for t in TRICKS if t.name == "cl-twice-equal")
    raw = trick.raw.replace(b"Host: localhost\r\n", b"Host: localhost\r\nX-Request-ID: trick-42\r\n", 1)
    replies, _, _ = exchange(strict, raw)
    assert replies[0].headers[HEADER.lower()] == "trick-42"
    other, _, _ = exchange(strict, trick.raw)
    assert other[0].headers[HEADER.lower()] not in ("", "trick-42")


def test_a_head_over_the_limit_in_pieces_gets_431_once_it_passes_the_limit(strict: ServeServer) -> None:
    head = head_of(100 * 1024)
    sent = 0
    received = b""
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(0.005)
        while sent < len(head) and b"\r\n\r\n" not in received:
            sock.sendall(head[sent : sent + 512])
            sent += 512
            with contextlib.suppress(TimeoutError):
                received += sock.recv(65536)
        more, closed = read_until_closed(sock)
    replies, _ = parse_replies(received + more)
    assert_protocol_answer(replies[0], 431, "header_too_large")
    assert closed and sent < 2 * HEAD_LIMIT, f"answered after {sent} bytes"


def test_a_head_that_never_ends_gets_408_in_json_with_the_security_headers(strict: ServeServer) -> None:
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        started = time.monotonic()
        received = b""
        for line in itertools.repeat(b"X-Slow: 1\r\n", 40):
            sock.sendall(line)
            more, closed = read_until_closed(sock, limit=0.1)
            received += more
            if closed:
                break
    replies, _ = parse_replies(received)
    error = assert_protocol_answer(replies[0], 408, "header_timeout")
    assert "1 s" in error["message"] and closed
    assert HEADER_TIMEOUT <= time.monotonic() - started < HEADER_TIMEOUT + 1.5


def test_every_operation_documents_the_protocols_400_and_431(strict: ServeServer) -> None:
    schema = httpx.get(f"{strict.url}/openapi.json", timeout=30).json()
    operations = [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]
    assert len(operations) > 10
    for path, method, op in operations:
        assert "`bad_request`" in op["responses"]["400"]["description"], (path, method)
        assert "`header_too_large`" in op["responses"]["431"]["description"], (path, method)
        assert op["responses"]["431"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
