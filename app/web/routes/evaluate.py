"""``POST /api/v1/evaluate``: image + mask → admission → analysis and encoding (worker thread, inside the gate) → analysis JSON plus metrics."""

import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from app.defaults import DEFAULT_SEED, IGNORE_INDEX, MAX_LABEL
from app.engine.analysis import Analysis
from app.web.deps import ServicesDep
from app.web.evaluation import check_labels, evaluate_json
from app.web.forms import GATE_RESPONSES, CalibratedForm, ImageFileForm, ModelForm, RawDtypeForm, RawForm, ResolutionForm, SeedForm, TtaForm, samples_form
from app.web.schemas.analysis import ErrorResponse
from app.web.schemas.evaluation import EvaluateResponse
from app.web.settings import Settings


def _responses() -> dict[int | str, dict[str, Any]]:
    return {
        415: {"model": ErrorResponse, "description": "The file or the mask is not an image in a format the server reads."},
        422: {
            "model": ErrorResponse,
            "description": "Corrupt image or mask, a mask that is not single-channel or not the image's size, "
            "no file or no mask, or a parameter out of range (error.field names which).",
        },
        **GATE_RESPONSES,
    }


def build_router(settings: Settings) -> APIRouter:
    """The evaluate router; its parameter limits come from ``settings``."""
    SamplesForm = samples_form(settings.max_samples)
    router = APIRouter(prefix="/api/v1", tags=["evaluation"])

    @router.post("/evaluate", response_model=EvaluateResponse, responses=_responses(), summary="Analyse one image and score it against its mask")
    async def evaluate(
        request: Request,
        services: ServicesDep,
        file: ImageFileForm,
        mask: Annotated[
            UploadFile, File(description="The ground truth: a single-channel PNG (mode L, P, I, I;16 or 1) of class indices, the image's width and height.")
        ],
        samples: SamplesForm = None,  # type: ignore[valid-type]
        seed: SeedForm = DEFAULT_SEED,
        calibrated: CalibratedForm = False,
        resolution: ResolutionForm = "working",
        ignore_index: Annotated[int, Form(ge=0, le=MAX_LABEL, description="Mask value that is not scored.")] = IGNORE_INDEX,
        ood_label: Annotated[
            int | None,
            Form(
                ge=0, le=MAX_LABEL, description="Mask value marking out-of-distribution pixels (may equal ignore_index); enables ood_detection. Omit for none."
            ),
        ] = None,
        raw: RawForm = False,
        raw_dtype: RawDtypeForm = "float32",
        model: ModelForm = None,
        tta: TtaForm = "none",
    ) -> Response:
        """Analyse one image like `/api/v1/analyze`, then score it against its mask.

        Adds `metrics` (mIoU, pixel accuracy, ECE/MCE/NLL/Brier with reliability data, error-detection AUROC/AURC
        per map and, with `ood_label`, OOD-detection AUROC per map), `error_map` and `reliability_png`. At the working
        resolution the mask is resized with the image (nearest neighbour) and scored at the analysed size.
        """
        started = time.perf_counter()
        service = services.get(model)
        card = service.bundle.card
        check_labels(len(card.classes), ood_label)

        def encode(analysis: Analysis, labels: np.ndarray) -> bytes:
            return evaluate_json(analysis, labels, card, ignore_index, ood_label, started, service.cache, file.filename, raw, raw_dtype)

        body = await service.evaluate(
            file.file,
            mask.file,
            encode,
            samples=samples,
            seed=seed,
            calibrated=calibrated,
            mask_name=mask.filename or "mask",
            resolution=resolution,
            disconnected=request.is_disconnected,
            tta=tta,
        )
        return Response(body, media_type="application/json")

    return router
