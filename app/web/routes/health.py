"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.web.errors import ApiError
from app.web.schemas.analysis import ErrorResponse, HealthResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, response_model_exclude_none=True)
async def healthz() -> HealthResponse:
    """The process is up and serving."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=HealthResponse, responses={503: {"model": ErrorResponse, "description": "The model is not loaded or not warmed up yet."}})
async def readyz(request: Request) -> HealthResponse:
    """The model is loaded and a warm-up analysis has run; 503 before."""
    service = getattr(request.app.state, "service", None)
    if service is None or not service.ready:
        failure = getattr(service, "failure", None)
        raise ApiError(503, "not_ready", failure or "the model is still loading")
    return HealthResponse(status="ready", model=service.name, device=str(service.device))
