"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.error_codes import ErrorCode
from app.web.errors import ApiError
from app.web.services import ModelServices
from app.web.settings import Settings


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_services(request: Request) -> ModelServices:
    """Every served model (loaded; each may still be warming up: :meth:`ModelServices.get` checks).

    Raises:
        ApiError: 503 while the models are still loading.
    """
    services: ModelServices | None = getattr(request.app.state, "services", None)
    if services is None:
        raise ApiError(ErrorCode.NOT_READY, "the models are still loading; retry in a few seconds (GET /readyz reports when they are ready)")
    return services


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServicesDep = Annotated[ModelServices, Depends(get_services)]
