"""``POST /api/v1/evaluate``: image + mask → admission → analysis and encoding (worker thread, inside the gate) → analysis JSON plus metrics."""

import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Form, Request, Response

from app.engine.analysis import Analysis
from app.web.api_paths import API_PREFIX
from app.web.deps import ServicesDep, SettingsDep
from app.web.early_refusal import PreferHeader, asked_mode, with_preference_applied
from app.web.evaluation import check_labels, evaluate_json
from app.web.forms import GATE_RESPONSES, EvaluateForm, ImageFileForm, MaskFileForm, UploadRoute
from app.web.jobs import Answer, Job
from app.web.routes.jobs import ACCEPTED, accepted
from app.web.schemas.analysis import ErrorResponse
from app.web.schemas.evaluation import EvaluateResponse


def _responses() -> dict[int | str, dict[str, Any]]:
    return {
        **ACCEPTED,
        415: {"model": ErrorResponse, "description": "The file or the mask is not an image in a format the server reads."},
        422: {
            "model": ErrorResponse,
            "description": "Corrupt image or mask, a mask that is not single-channel or not the image's size, "
            "no file or no mask, or a parameter out of range (error.field names which).",
        },
        **GATE_RESPONSES,
    }


router = APIRouter(prefix=API_PREFIX, tags=["evaluation"], route_class=UploadRoute)


@router.post("/evaluate", response_model=EvaluateResponse, responses=_responses(), summary="Analyse one image and score it against its mask")
async def evaluate(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    file: ImageFileForm,
    mask: MaskFileForm,
    form: Annotated[EvaluateForm, Form()],
    prefer: PreferHeader = None,
) -> Response:
    """Analyse one image like `/api/v1/analyze`, then score it against its mask.

    Adds `metrics` (mIoU, pixel accuracy, ECE/MCE/NLL/Brier with reliability data, error-detection AUROC/AURC
    per map and, with `ood_label`, OOD-detection AUROC per map), `error_map` and `reliability_png`. At the working
    resolution the mask is resized with the image (nearest neighbour) and scored at the analysed size.
    """
    started = time.perf_counter()
    service = services.get(form.model)
    card = service.bundle.card
    check_labels(len(card.classes), form.ood_label)
    asked = form.analysis_request(service.default_samples, settings.max_samples, settings.min_area, default_tta=service.default_tta)

    def encode(analysis: Analysis, labels: np.ndarray) -> Answer:
        body = evaluate_json(analysis, labels, card, form.ignore_index, form.ood_label, started, service.cache, file.filename, form.raw, form.raw_dtype)
        return Answer(body, "application/json")

    mode = asked_mode(form.mode, prefer, services.jobs.enabled)
    outcome = await service.evaluate(file.file, mask.file, encode, asked, mask_name=mask.filename or "mask", disconnected=request.is_disconnected, mode=mode)
    return with_preference_applied(accepted(outcome), prefer) if isinstance(outcome, Job) else outcome.response()
