"""``POST /api/v1/analyze``: upload → admission → read, decode, analyse and encode (worker thread, inside the gate) → JSON or NPZ."""

import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response

from app.engine.analysis import Analysis
from app.error_codes import ErrorCode
from app.io.npz import npz_bytes
from app.io.zarr_store import store_npz
from app.web.api_paths import API_PREFIX
from app.web.deps import ServicesDep, SettingsDep
from app.web.early_refusal import PreferHeader, asked_mode, with_preference_applied
from app.web.encoding import analysis_json, download_name
from app.web.errors import ApiError
from app.web.forms import GATE_RESPONSES, AnalyzeForm, ImageFileForm, UploadRoute
from app.web.jobs import Answer, Job
from app.web.routes.jobs import ACCEPTED, accepted
from app.web.schemas.analysis import AnalyzeResponse, ErrorResponse

NPZ_MEDIA_TYPE = "application/x-npz"

router = APIRouter(prefix=API_PREFIX, tags=["analysis"], route_class=UploadRoute)

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The analysis: JSON (format=json) or an .npz attachment (format=npz, deflated, numpy.load reads it) holding the "
        "maps as float16 (`feature_distance` float32), the label map `prediction` (uint8 up to 256 classes, else uint16) and, "
        "when `save` names them, (C, H, W) float32 `probs`, `mean_probs`, `class_variance`.",
        "content": {NPZ_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    },
    **ACCEPTED,
    415: {"model": ErrorResponse, "description": "The file is not an image in a format the server reads."},
    422: {"model": ErrorResponse, "description": "Corrupt or truncated image, a parameter out of range, or no file."},
    **GATE_RESPONSES,
}


def stored_npz(path: Path, save: tuple[str, ...]) -> bytes:
    """The NPZ of a streamed analysis's store; a class array it lacks is a 422 on ``save``."""
    try:
        return store_npz(path, save)
    except ValueError as exc:
        raise ApiError(ErrorCode.VALIDATION_ERROR, str(exc), "save") from exc


@router.post("/analyze", response_model=AnalyzeResponse, responses=RESPONSES, summary="Analyse one image")
async def analyze(
    request: Request,
    services: ServicesDep,
    settings: SettingsDep,
    file: ImageFileForm,
    form: Annotated[AnalyzeForm, Form()],
    prefer: PreferHeader = None,
) -> Response:
    """Compute the prediction, the uncertainty maps and the region table of one image.

    Maps use fixed colour scales (see each map's `range` and `display_power`), so two images can be compared by eye.
    The analysis is kept under `analysis_id` for a while: its PNGs, NPZ and exact pixel values are served by
    `GET /api/v1/analyses/{analysis_id}/...` without running it again.

    A request over the server's work budget runs as a job (`mode`): 202 with the job's status; its progress, events, cancel
    and this same answer are under `GET /api/v1/jobs/{job_id}`. `Prefer: respond-async` asks for a job when `mode` is left at
    auto, and lets the request in while the queue is full (a request without it is then refused with 503 before its upload is read).
    """
    started = time.perf_counter()
    service = services.get(form.model)
    asked = form.analysis_request(service.default_samples, settings.max_samples, settings.min_area, default_tta=service.default_tta)

    def encode(analysis: Analysis) -> Answer:
        if form.output_format == "npz":
            disposition = f'attachment; filename="{download_name(file.filename, "_maps.npz")}"'
            body = npz_bytes(analysis, form.saved_arrays) if analysis.stored is None else stored_npz(analysis.stored.path, form.saved_arrays)
            return Answer(body, NPZ_MEDIA_TYPE, {"Content-Disposition": disposition})
        return Answer(analysis_json(analysis, service.bundle.card, service.cache, file.filename, form.raw, form.raw_dtype, started), "application/json")

    mode = asked_mode(form.mode, prefer, services.jobs.enabled)
    outcome = await service.analyze(file.file, encode, asked, disconnected=request.is_disconnected, mode=mode)
    return with_preference_applied(accepted(outcome), prefer) if isinstance(outcome, Job) else outcome.response()
