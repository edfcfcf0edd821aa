"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.web.errors import ApiError
from app.web.service import AnalysisService
from app.web.settings import Settings


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_service(request: Request) -> AnalysisService:
    """The shared analysis service, once the model is loaded and warmed up.

    Raises:
        ApiError: 503 while the model is still loading.
    """
    service: AnalysisService | None = getattr(request.app.state, "service", None)
    if service is None or not service.ready:
        raise ApiError(503, "not_ready", "the model is still loading; retry in a few seconds (GET /readyz reports when it is ready)")
    return service


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[AnalysisService, Depends(get_service)]
