"""Deployment safety: trusted hosts, no cross-origin writes, optional API keys and security headers on every response.

Each guard is a small ASGI middleware, one per module, that answers in the common JSON error shape before the
request body is read (:mod:`~app.web.security.refusal`), so a refused request never costs an upload, a queue slot
or an analysis. The factory stacks them, outermost first: headers (:mod:`~app.web.security.headers`), hosts
(:mod:`~app.web.security.hosts`), origins (:mod:`~app.web.security.origins`), CORS, API keys
(:mod:`~app.web.security.api_keys`), then the body limit (:mod:`app.web.limits`), the early refusal
(:mod:`app.web.early_refusal`) and the routes. With keys on, what a
request keeps (an analysis, a job) belongs to its key (:func:`~app.web.security.api_keys.current_owner`).
"""

from app.web.security.api_keys import OWNER_STATE, PUBLIC_PATHS, PUBLIC_PREFIXES, ApiKeyMiddleware, current_owner, owned_by, same_owner
from app.web.security.headers import CSP_DIRECTIVES, SECURITY_HEADERS, SecurityHeadersMiddleware, content_security_policy, secure_server_errors
from app.web.security.hosts import TrustedHostMiddleware, host_name
from app.web.security.origins import CrossOriginWriteMiddleware
from app.web.security.refusal import SAFE_METHODS

__all__ = [
    "CSP_DIRECTIVES",
    "OWNER_STATE",
    "PUBLIC_PATHS",
    "PUBLIC_PREFIXES",
    "SAFE_METHODS",
    "SECURITY_HEADERS",
    "ApiKeyMiddleware",
    "CrossOriginWriteMiddleware",
    "SecurityHeadersMiddleware",
    "TrustedHostMiddleware",
    "content_security_policy",
    "current_owner",
    "host_name",
    "owned_by",
    "same_owner",
    "secure_server_errors",
]
