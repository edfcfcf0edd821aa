"""``GET /api/v1/models``: the served models' cards, the default first."""

from __future__ import annotations

from fastapi import APIRouter

from app.io.card import dropout_note
from app.web.api_paths import API_PREFIX
from app.web.deps import ServicesDep, SettingsDep
from app.web.schemas.analysis import ClassOut, ErrorResponse, ModelInfo, ModelsResponse
from app.web.service import AnalysisService

router = APIRouter(prefix=API_PREFIX, tags=["models"])


def model_info(service: AnalysisService, default: bool = True) -> ModelInfo:
    """The card of the service's model as a response model; ``default``: it is the model of requests that name none."""
    card = service.bundle.card
    return ModelInfo(
        name=card.name,
        classes=[ClassOut(index=i, name=c.name, colour=c.colour) for i, c in enumerate(card.classes)],
        domain=card.domain,
        working_size=card.input.working_size,
        architecture=card.architecture,
        normalization=card.normalization.model_dump(mode="json"),
        dropout=card.dropout.model_dump(mode="json"),
        dropout_note=dropout_note(card.dropout.trained_with_dropout),
        temperature=card.temperature,
        calibration=card.calibration,
        provenance=card.provenance,
        device=str(service.device),
        default=default,
        default_samples=service.default_samples,
        default_tta=service.default_tta,
        feature_density="feature_distance" not in service.analyzer.unavailable,
        ready=service.ready,
    )


@router.get("/models", response_model=ModelsResponse, responses={503: {"model": ErrorResponse, "description": "The models are still loading."}})
async def list_models(services: ServicesDep, settings: SettingsDep) -> ModelsResponse:
    """The served models (the form field `model` of analyze and evaluate picks one by name; the first is the default): classes,
    normalisation, dropout, temperature, calibration, provenance and default MC samples of each, plus request limits."""
    default = services.default
    return ModelsResponse(
        default=default.name,
        models=[model_info(service, service is default) for service in services.services.values()],
        default_samples=default.default_samples,
        max_samples=settings.max_samples,
        max_body_bytes=settings.max_body_bytes,
        max_pixels=settings.max_pixels,
    )
