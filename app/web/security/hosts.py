"""Trusted hosts: a request whose ``Host`` header names another server is refused (DNS-rebinding defence)."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.error_codes import ErrorCode
from app.web.security.refusal import quoted, reject
from app.web.settings import env_name

__all__ = ["TrustedHostMiddleware", "host_name"]


def host_name(host_header: str) -> str:
    """The name in a ``Host`` header, lower case, without port, IPv6 brackets or a trailing dot."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        host = name
    return host.rstrip(".")


class TrustedHostMiddleware:
    """Answer 400 to a request whose ``Host`` is not in ``allowed`` (DNS-rebinding defence).

    Args:
        app: The wrapped ASGI app.
        allowed: Host names as in ``Settings.allowed_hosts``: exact names, ``*.domain`` for its subdomains, ``*`` for any.
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)
        self.any = "*" in self.allowed
        self.suffixes = tuple(host[1:] for host in self.allowed if host.startswith("*."))

    def allows(self, host: str) -> bool:
        """Whether a request with this ``Host`` header is answered."""
        name = host_name(host)
        return self.any or (bool(name) and (name in self.allowed or name.endswith(self.suffixes)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host", "")
        if self.allows(host):
            await self.app(scope, receive, send)
            return
        message = f"this server does not answer to the host {quoted(host)}; its operator can add the name to {env_name('allowed_hosts')}"
        await reject(scope, send, ErrorCode.INVALID_HOST, message)
