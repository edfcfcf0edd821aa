"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.error_codes import ErrorCode
from app.web.errors import ApiError
from app.web.schemas.analysis import ErrorResponse, HealthResponse
from app.web.services import ModelServices

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, response_model_exclude_none=True)
async def healthz() -> HealthResponse:
    """The process is up and serving."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz", response_model=HealthResponse, responses={503: {"model": ErrorResponse, "description": "Some model is not loaded or not warmed up yet."}}
)
async def readyz(request: Request) -> HealthResponse:
    """Every model is loaded and its warm-up analysis has run; 503 before, naming the models that are not ready."""
    services: ModelServices | None = getattr(request.app.state, "services", None)
    if services is None:
        raise ApiError(ErrorCode.NOT_READY, "the model is still loading")
    if not services.ready:
        waiting = [status.name for status in services.statuses() if not status.ready and status.failure is None]
        raise ApiError(ErrorCode.NOT_READY, services.failure or f"still warming up: {', '.join(waiting)}")
    default = services.default
    return HealthResponse(status="ready", model=default.name, device=str(default.device), models=services.names)
