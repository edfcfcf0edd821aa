"""Optional API keys: with keys configured, everything but the page, its files, the docs and the probes needs one.

A request with a valid key runs as that key's *owner*: ``key-<n>``, the key's position in ``SEGU_API_KEYS`` (1 for the
first), never the key itself. The owner is in the request's ``scope["state"]`` (:data:`OWNER_STATE`) and, for the code
the request runs (its tasks and worker threads: anyio copies the context into them), :func:`current_owner`. What a
request keeps (an analysis, a job) belongs to its owner and is found by id only by requests of the same owner
(:func:`same_owner`); with keys off the owner is ``None`` and everything is everyone's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.error_codes import ErrorCode
from app.web.security.refusal import reject

__all__ = ["OWNER_STATE", "PUBLIC_PATHS", "PUBLIC_PREFIXES", "ApiKeyMiddleware", "current_owner", "owned_by", "owner_tag", "same_owner"]

# Reachable without an API key: the page shell, its static files, the docs and the probes; everything else needs one.
PUBLIC_PATHS = frozenset({"/", "/docs", "/openapi.json", "/healthz", "/readyz"})
PUBLIC_PREFIXES = ("/static/",)
OWNER_STATE = "api_key_owner"

_owner: ContextVar[str | None] = ContextVar("api_key_owner", default=None)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def owner_tag(number: int) -> str:
    """The owner tag of the ``number``-th key of ``SEGU_API_KEYS`` (1 for the first)."""
    return f"key-{number}"


def current_owner() -> str | None:
    """The owner of the request being served (its key's tag); ``None`` with keys off or outside a request."""
    return _owner.get()


@contextmanager
def owned_by(owner: str | None) -> Iterator[None]:
    """Make ``owner`` :func:`current_owner` inside the block, for this task and the tasks and threads it starts."""
    token = _owner.set(owner)
    try:
        yield
    finally:
        _owner.reset(token)


def same_owner(held_by: str | None, asking: str | None) -> bool:
    """Whether ``asking`` may see what ``held_by`` owns: the same tag, or both ``None`` (keys off), compared in constant time."""
    return hmac.compare_digest(repr(held_by).encode(), repr(asking).encode())


class ApiKeyMiddleware:
    """Answer 401 to a request for anything but the page, its files, the docs and the probes without a valid API key.

    The key comes as ``Authorization: Bearer <key>``. Keys are compared as SHA-256 digests with
    :func:`hmac.compare_digest`, each against every configured key, so timing tells nothing about them. A request
    with a valid key runs as its owner (:func:`owner_tag`, :func:`current_owner`).

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
        return self.owner_of(presented) is not None

    def owner_of(self, presented: str) -> str | None:
        """The owner tag of ``presented`` (its first position among the keys), or ``None`` when it is no key."""
        digest = _digest(presented)
        position = 0
        for number, known in enumerate(self.digests, 1):
            position += number * hmac.compare_digest(digest, known) * (position == 0)
        return owner_tag(position) if position else None

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
        owner = self.owner_of(key.strip()) if scheme.lower() == "bearer" else None
        if owner is not None:
            scope.setdefault("state", {})[OWNER_STATE] = owner
            with owned_by(owner):
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
