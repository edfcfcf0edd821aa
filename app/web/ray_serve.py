"""The web app on Ray Serve: the same FastAPI app (:func:`app.web.factory.create_app`) behind ``@serve.ingress``.

Each replica builds the app when it starts; the app's lifespan loads the bundle once and warms it up, exactly as in
the single-process server, and every response carries ``X-Replica-ID``. Analysis ids start with the replica's id,
and requests for a kept analysis are routed to that replica (:mod:`app.web.ray_router`). Ray's proxy spreads requests over the
replicas, sending each at most ``max_ongoing_requests`` at a time; requests beyond those wait at the proxy, and once
``max_queued_requests`` wait there, the next ones get Ray's own 503 (plain text ``Request dropped due to backpressure
(num_queued_requests=…, max_queued_requests=…).``, not the app's JSON error shape). Inside a replica the app's own
admission control still applies (``SEGU_MAX_CONCURRENT``, ``SEGU_MAX_QUEUE``, ``SEGU_MAX_WORK``).

Run it with ``seg-uncertainty serve --ray --replicas N [--gpus-per-replica G]`` or ``serve run deploy/serve.yaml``,
whose ``args`` are :class:`~app.web.settings.Settings` fields (see :func:`app_builder`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web.factory import create_app
from app.web.settings import Settings

__all__ = ["APP_NAME", "DEPLOYMENT_NAME", "REPLICA_HEADER", "ReplicaOptions", "WebAppDeployment", "app_builder", "build_application"]

APP_NAME = "seg-uncertainty"
DEPLOYMENT_NAME = "SegUncertainty"
REPLICA_HEADER = "X-Replica-ID"
MAX_ONGOING_REQUESTS = 2
MAX_QUEUED_REQUESTS = 16
ROUTER = "app.web.ray_router.AnalysisAffinityRouter"  # imported by Ray Serve's proxies


class ReplicaHeaderMiddleware:
    """Adds ``X-Replica-ID: <replica id>`` to every HTTP response."""

    def __init__(self, app: ASGIApp, replica_id: str) -> None:
        self.app = app
        self.replica_id = replica_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REPLICA_HEADER] = self.replica_id
            await send(message)

        await self.app(scope, receive, send_with_id)


class WebAppReplica:
    """One replica of the web app.

    Args:
        settings: :class:`~app.web.settings.Settings` fields; the others come from ``SEGU_*`` variables in the
            replica's environment (on a cluster: ``runtime_env.env_vars``), then the defaults.
    """

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.overrides = dict(settings or {})
        self.web_app: FastAPI | None = None

    def __serve_build_asgi_app__(self) -> FastAPI:
        """The app; Ray Serve then runs its lifespan (model loading) before the replica takes requests."""
        replica_id = serve.get_replica_context().replica_tag
        web_app = create_app(Settings(**{**self.overrides, "analysis_id_prefix": f"{replica_id}."}))
        web_app.add_middleware(ReplicaHeaderMiddleware, replica_id=replica_id)
        self.web_app = web_app
        return web_app

    def check_health(self) -> None:
        """Ray Serve's periodic health check: a replica where some model's warm-up analysis failed is replaced."""
        services = None if self.web_app is None else self.web_app.state.services
        if services is not None and services.failure is not None:
            raise RuntimeError(services.failure)


WebAppDeployment = serve.deployment(
    name=DEPLOYMENT_NAME,
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    max_queued_requests=MAX_QUEUED_REQUESTS,
    request_router_config={"request_router_class": ROUTER},
)(serve.ingress()(WebAppReplica))


@dataclass(frozen=True)
class ReplicaOptions:
    """How many replicas, what each reserves and how many requests it and the proxy hold.

    ``max_ongoing_requests`` (per replica) is best kept at ``SEGU_MAX_CONCURRENT`` + 1: one request waits in the
    replica to start as soon as the running one ends, and the rest wait at the proxy, where any replica can take them.
    ``max_queued_requests`` bounds the proxy's queue (then 503); -1: no bound.
    """

    replicas: int = 1
    cpus: float = 1.0
    gpus: float = 0.0
    max_ongoing_requests: int = MAX_ONGOING_REQUESTS
    max_queued_requests: int = MAX_QUEUED_REQUESTS


def build_application(settings: Mapping[str, Any], options: ReplicaOptions) -> Application:
    """The Serve application of the web app with these settings overrides and replicas."""
    deployment = WebAppDeployment.options(
        num_replicas=options.replicas,
        ray_actor_options={"num_cpus": options.cpus, "num_gpus": options.gpus},
        max_ongoing_requests=options.max_ongoing_requests,
        max_queued_requests=options.max_queued_requests,
    )
    return deployment.bind(dict(settings))


def app_builder(args: dict[str, Any]) -> Application:
    """The application builder of ``serve run``/``serve deploy``: ``args`` are Settings fields, checked here.

    The deployment's options (replicas or autoscaling, ``ray_actor_options``, ``max_ongoing_requests``,
    ``max_queued_requests``) come from the config file's ``deployments`` entry named ``SegUncertainty``.

    Raises:
        ValueError: an argument that is not a Settings field (a typo would otherwise be ignored).
        pydantic.ValidationError: a value Settings refuses.
    """
    unknown = sorted(set(args) - set(Settings.model_fields))
    if unknown:
        raise ValueError(f"not settings fields: {', '.join(unknown)}; the fields are {', '.join(Settings.model_fields)}")
    Settings(**args)
    return WebAppDeployment.bind(dict(args))
