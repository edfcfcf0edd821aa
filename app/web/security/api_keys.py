"""Optional API keys: with keys configured, everything but the page, its files, the docs and the probes needs one."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.error_codes import ErrorCode
from app.web.security.refusal import reject

__all__ = ["PUBLIC_PATHS", "PUBLIC_PREFIXES", "ApiKeyMiddleware"]

# Reachable without an API key: the page shell, its static files, the docs and the probes; everything else needs one.
PUBLIC_PATHS = frozenset({"/", "/docs", "/openapi.json", "/healthz", "/readyz"})
PUBLIC_PREFIXES = ("/static/",)


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
        await reject(scope, send, ErrorCode.UNAUTHORIZED, message, {"WWW-Authenticate": challenge}, field="authorization")
