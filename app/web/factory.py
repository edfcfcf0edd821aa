"""The app factory: settings, model loading in the lifespan, middleware, routers and static files."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import anyio.to_thread
import torch
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from app.engine.compiled import set_compilation
from app.engine.device import resolve_device
from app.io.bundle import Bundle, load_bundle
from app.io.resources import static_dir
from app.web import docs
from app.web.description import api_description
from app.web.early_refusal import EarlyRefusalMiddleware
from app.web.errors import install_error_handlers, protocol_responses
from app.web.limits import BodyLimitMiddleware
from app.web.metrics import Metrics
from app.web.observe import ObserveMiddleware
from app.web.request_id import with_request_id_on_server_errors
from app.web.routes import analyses, analyze, evaluate, health, jobs, metrics, models, page
from app.web.security import ApiKeyMiddleware, CrossOriginWriteMiddleware, SecurityHeadersMiddleware, TrustedHostMiddleware, secure_server_errors
from app.web.services import ModelServices
from app.web.settings import Settings

log = logging.getLogger("app.web")


async def _load_bundles(sources: list[str], device: torch.device) -> list[Bundle]:
    """Load each model in a worker thread, one after the other."""
    return [await anyio.to_thread.run_sync(load_bundle, source, device) for source in sources]


def _lifespan(settings: Settings, bundle: Bundle | None) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        set_compilation(settings.compile_kernels)
        device = resolve_device(settings.device)
        loaded = [bundle] if bundle is not None else await _load_bundles(settings.model_sources, device)
        services = ModelServices(loaded, device, settings, app.state.metrics)
        app.state.services = services
        app.state.service = services.default
        async with anyio.create_task_group() as tg:
            await tg.start(services.jobs.serve)
            tg.start_soon(services.start)
            yield
            tg.cancel_scope.cancel()
        services.cache.close()  # the streamed analyses' stores on disk
        app.state.services = None
        app.state.service = None

    return lifespan


def create_app(settings: Settings | None = None, bundle: Bundle | None = None) -> FastAPI:
    """Build the web app.

    Args:
        settings: Server settings; ``None`` reads them from ``SEGU_*`` environment variables.
        bundle: An already loaded bundle to serve instead of loading ``settings.model_sources``.

    Returns:
        The FastAPI app. The models are loaded when the app starts (lifespan), in ``app.state.services``
        (:class:`~app.web.services.ModelServices`; ``app.state.service`` is the default model's); ``/readyz`` answers
        200 once every model's warm-up analysis has run.
    """
    settings = settings if settings is not None else Settings()
    app = docs.DocumentedApp(
        title="seg-uncertainty",
        version="1",
        description=api_description(),
        lifespan=_lifespan(settings, bundle),
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    app.state.settings = settings
    app.state.service = None
    app.state.services = None
    app.state.metrics = Metrics()
    install_error_handlers(app)
    app.add_middleware(EarlyRefusalMiddleware, services=lambda: app.state.services)  # innermost: a full queue refuses from the headers
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout=settings.body_timeout)
    if settings.api_keys:  # deployment safety: inside CORS (401s carry CORS headers, preflights need no key), before any body is read
        app.add_middleware(ApiKeyMiddleware, keys=[key.get_secret_value() for key in settings.api_keys])
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"], allow_headers=["*"])
    app.add_middleware(CrossOriginWriteMiddleware, allowed=settings.cors_origins)  # deployment safety: outermost three
    app.add_middleware(TrustedHostMiddleware, allowed=settings.allowed_hosts)
    app.add_middleware(SecurityHeadersMiddleware)
    secure_server_errors(app)
    with_request_id_on_server_errors(app)
    routers = [health.router, models.router, analyze.router, evaluate.router, analyses.router, jobs.router]
    routers.append(page.router)
    if settings.metrics:
        routers.append(metrics.router)
    if settings.docs:
        if settings.api_keys:
            docs.declare_bearer_keys(app)
        routers.append(docs.router)  # before the /static mount, which would shadow /static/swagger/
    for router in routers:
        app.include_router(router, responses=protocol_responses())  # the HTTP layer may answer any route 400 or 431 (app.web.protocol)
    app.mount("/static", StaticFiles(directory=str(static_dir())), name="static")
    # Added last, so outermost: request ids, counts and the access log see every answer. Routes are labelled by the
    # routers' own routes first (the app's list may hold included routers without a path), then the app's (mount, OpenAPI).
    routes = [route for router in routers for route in router.routes] + [route for route in app.router.routes if isinstance(getattr(route, "path", None), str)]
    app.add_middleware(ObserveMiddleware, metrics=app.state.metrics, routes=routes)
    return app
