"""Deployment safety: trusted hosts, no cross-origin writes, optional API keys and security headers on every response.

Each guard is a small ASGI middleware that answers in the common JSON error shape before the request body is read,
so a refused request never costs an upload, a queue slot or an analysis. The factory stacks them, outermost first:
headers, hosts, origins, CORS, API keys, then the body limit and the routes.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web.errors import error_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable without an API key: the page shell, its static files, the docs and the probes; everything else needs one.
PUBLIC_PATHS = frozenset({"/", "/docs", "/openapi.json", "/healthz", "/readyz"})
PUBLIC_PREFIXES = ("/static/",)

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


async def _reject(scope: Scope, send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None, field: str | None = None) -> None:
    async def no_body() -> Message:
        return {"type": "http.disconnect"}

    extra = dict(headers or {})
    if scope.get("method", "GET") not in SAFE_METHODS:
        extra["Connection"] = "close"  # the unread upload is never drained
    await error_response(status, code, message, field, headers=extra)(scope, no_body, send)


def _quoted(value: str, limit: int = 100) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


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
        message = f"this server does not answer to the host {_quoted(host)}; its operator can add the name to SEGU_ALLOWED_HOSTS"
        await _reject(scope, send, 400, "invalid_host", message)


class CrossOriginWriteMiddleware:
    """Answer 403 to a POST (any unsafe method) sent by a page of another origin, before its body is read.

    CORS only stops a foreign page from reading the answer; a "simple" multipart POST would still be computed.
    A request is refused when its ``Origin`` is neither this server's own (the ``Host`` it was sent to) nor listed
    in ``allowed``, or when the browser marks it ``Sec-Fetch-Site: cross-site`` and its origin is not listed.
    Clients that send no ``Origin`` (curl, scripts) pass.

    Args:
        app: The wrapped ASGI app.
        allowed: Origins allowed by CORS (``Settings.cors_origins``); ``*`` allows every origin.
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(origin.rstrip("/").lower() for origin in allowed)

    def refuses(self, headers: Headers) -> str | None:
        """The origin to name in the refusal, or ``None`` when the request may proceed."""
        origin = headers.get("origin")
        listed = "*" in self.allowed or (origin is not None and origin.rstrip("/").lower() in self.allowed)
        if listed:
            return None
        if headers.get("sec-fetch-site", "").lower() == "cross-site":
            return origin or "(another site)"
        if origin is None:
            return None
        own = urlsplit(origin.lower()).netloc if origin.lower().startswith(("http://", "https://")) else None
        return None if own and own == headers.get("host", "").strip().lower() else origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        origin = self.refuses(Headers(scope=scope))
        if origin is None:
            await self.app(scope, receive, send)
            return
        message = f"requests from the web origin {_quoted(origin)} are refused; its operator can allow it with SEGU_CORS_ORIGINS"
        await _reject(scope, send, 403, "forbidden_origin", message)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeyMiddleware:
    """Answer 401 to a request for anything but the page, its files, the docs and the probes without a valid API key.

    The key comes as ``Authorization: Bearer <key>``. Keys are compared as SHA-256 digests with
    :func:`hmac.compare_digest`, each against every configured key, so timing tells nothing about them.

    Args:
        app: The wrapped ASGI app.
        keys: The accepted keys (at least one).
    """

    def __init__(self, app: ASGIApp, keys: Iterable[str]) -> None:
        self.app = app
        self.digests = [_digest(key) for key in keys]
        if not self.digests:
            raise ValueError("ApiKeyMiddleware needs at least one key")

    def valid(self, presented: str) -> bool:
        """Whether ``presented`` is one of the keys."""
        digest = _digest(presented)
        found = False
        for known in self.digests:
            found |= hmac.compare_digest(digest, known)
        return found

    @staticmethod
    def public(scope: Scope) -> bool:
        """Whether the request's path is reachable without a key."""
        path = str(scope["path"])
        root = str(scope.get("root_path", ""))
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.public(scope):
            await self.app(scope, receive, send)
            return
        scheme, _, key = Headers(scope=scope).get("authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer" and self.valid(key.strip()):
            await self.app(scope, receive, send)
            return
        if not scheme:
            message, challenge = "this server requires an API key: send it as `Authorization: Bearer <key>`", 'Bearer realm="api"'
        else:
            message, challenge = (
                "the API key is not valid: send a key of this server as `Authorization: Bearer <key>`",
                'Bearer realm="api", error="invalid_token"',
            )
        await _reject(scope, send, 401, "unauthorized", message, {"WWW-Authenticate": challenge}, field="authorization")
