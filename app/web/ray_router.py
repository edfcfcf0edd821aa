"""Ray Serve request routing for the web app: a request for a kept analysis goes to the replica that holds it.

Each replica keeps its own analyses (:class:`app.web.cache.AnalysisCache`) and names them ``<replica id>.<token>``
(``SEGU_ANALYSIS_ID_PREFIX``, set by :mod:`app.web.ray_serve`). ``GET /api/v1/analyses/{analysis_id}/…`` (the page's
exact pixel values, the PNG and NPZ downloads) is therefore routed to that replica; any other request, or one whose
replica is gone (its analyses with it: 404 ``analysis_not_found``, as after expiry), gets Ray Serve's default routing (power of
two choices: the less busy of two random replicas).

This module runs inside Ray Serve's proxies; it relies on the proxy handing the replica the HTTP request as a pickled
object with the ASGI scope (``asgi_scope``), as Ray Serve 2.60 does.
"""

from __future__ import annotations

import pickle
from typing import Any

from ray.serve._private.request_router.pow_2_router import PowerOfTwoChoicesRequestRouter
from ray.serve.request_router import PendingRequest, RunningReplica

from app.web.api_paths import ANALYSES_PATH

__all__ = ["ANALYSES_PREFIX", "AnalysisAffinityRouter", "owner_of"]

ANALYSES_PREFIX = f"{ANALYSES_PATH}/"


def owner_of(path: str) -> str | None:
    """The replica id in ``/api/v1/analyses/<replica id>.<token>/…``; ``None`` for any other path."""
    if not path.startswith(ANALYSES_PREFIX):
        return None
    analysis_id = path[len(ANALYSES_PREFIX) :].split("/", 1)[0]
    replica, dot, token = analysis_id.partition(".")
    return replica if dot and replica and token else None


def _request_path(request: PendingRequest) -> str | None:
    if not request.metadata.route.startswith(ANALYSES_PREFIX) or not request.args or not isinstance(request.args[0], bytes):
        return None
    scope: Any = getattr(pickle.loads(request.args[0]), "asgi_scope", None)
    path = scope.get("path") if isinstance(scope, dict) else None
    return path if isinstance(path, str) else None


class AnalysisAffinityRouter(PowerOfTwoChoicesRequestRouter):
    """Power of two choices, except that a request for a kept analysis goes to the replica named in its id."""

    async def choose_replicas(self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        """The replicas to try, in ranks: only the owner when the request names an analysis of a live replica."""
        path = None if pending_request is None else _request_path(pending_request)
        owner = None if path is None else owner_of(path)
        if owner is not None:
            for replica in candidate_replicas:
                if replica.replica_id.unique_id == owner:
                    return [[replica]]
        chosen: list[list[RunningReplica]] = await super().choose_replicas(candidate_replicas, pending_request)
        return chosen
