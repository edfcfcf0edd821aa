"""``GET /api/v1/models``: the loaded bundle's card."""

from __future__ import annotations

from fastapi import APIRouter

from app.web.deps import ServiceDep, SettingsDep
from app.web.schemas.analysis import ClassOut, ErrorResponse, ModelInfo, ModelsResponse
from app.web.service import AnalysisService

router = APIRouter(prefix="/api/v1", tags=["models"])


def model_info(service: AnalysisService) -> ModelInfo:
    """The card of the service's model as a response model."""
    card = service.bundle.card
    return ModelInfo(
        name=card.name,
        classes=[ClassOut(index=i, name=c.name, colour=c.colour) for i, c in enumerate(card.classes)],
        domain=card.domain,
        working_size=card.input.working_size,
        architecture=card.architecture,
        normalization=card.normalization.model_dump(mode="json"),
        dropout=card.dropout.model_dump(mode="json"),
        temperature=card.temperature,
        calibration=card.calibration,
        provenance=card.provenance,
        device=str(service.device),
    )


@router.get("/models", response_model=ModelsResponse, responses={503: {"model": ErrorResponse, "description": "The model is still loading."}})
async def list_models(service: ServiceDep, settings: SettingsDep) -> ModelsResponse:
    """The loaded model: classes, normalisation, dropout, temperature, calibration and provenance, plus request limits."""
    return ModelsResponse(
        default=service.name,
        models=[model_info(service)],
        default_samples=settings.default_samples,
        max_samples=settings.max_samples,
        max_body_bytes=settings.max_body_bytes,
        max_pixels=settings.max_pixels,
    )
