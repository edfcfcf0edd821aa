"""``POST /api/v1/analyze``: upload → admission → read, decode, analyse and encode (worker thread, inside the gate) → JSON or NPZ."""

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request, Response

from app.defaults import DEFAULT_SEED
from app.engine.analysis import Analysis
from app.io.encoding import npz_bytes
from app.web.deps import ServicesDep
from app.web.encoding import analysis_json, download_name
from app.web.forms import GATE_RESPONSES, CalibratedForm, ImageFileForm, ModelForm, RawDtypeForm, RawForm, ResolutionForm, SeedForm, TtaForm, samples_form
from app.web.schemas.analysis import AnalyzeResponse, ErrorResponse
from app.web.settings import Settings

NPZ_MEDIA_TYPE = "application/x-npz"


def _responses() -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": "The analysis: JSON (format=json) or an .npz attachment (format=npz) holding float32 maps, "
            "the uint8 label map `prediction` and (C, H, W) `mean_probs`, `probs`, `class_variance`.",
            "content": {NPZ_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        415: {"model": ErrorResponse, "description": "The file is not an image in a format the server reads."},
        422: {"model": ErrorResponse, "description": "Corrupt or truncated image, a parameter out of range, or no file."},
        **GATE_RESPONSES,
    }


def build_router(settings: Settings) -> APIRouter:
    """The analyze router; its parameter limits come from ``settings``."""
    SamplesForm = samples_form(settings.max_samples)
    router = APIRouter(prefix="/api/v1", tags=["analysis"])

    @router.post("/analyze", response_model=AnalyzeResponse, responses=_responses(), summary="Analyse one image")
    async def analyze(
        request: Request,
        services: ServicesDep,
        file: ImageFileForm,
        samples: SamplesForm = None,  # type: ignore[valid-type]
        seed: SeedForm = DEFAULT_SEED,
        calibrated: CalibratedForm = False,
        resolution: ResolutionForm = "working",
        output_format: Annotated[
            Literal["json", "npz"], Form(alias="format", description="json: the analysis as JSON; npz: a NumPy archive of the raw arrays.")
        ] = "json",
        raw: RawForm = False,
        raw_dtype: RawDtypeForm = "float32",
        model: ModelForm = None,
        tta: TtaForm = "none",
    ) -> Response:
        """Compute the prediction, the uncertainty maps and the region table of one image.

        Maps use fixed colour scales (see each map's `range` and `display_power`), so two images can be compared by eye.
        The analysis is kept under `analysis_id` for a while: its PNGs, NPZ and exact pixel values are served by
        `GET /api/v1/analyses/{analysis_id}/...` without running it again.
        """
        started = time.perf_counter()
        service = services.get(model)

        def encode(analysis: Analysis) -> bytes:
            if output_format == "npz":
                return npz_bytes(analysis)
            return analysis_json(analysis, service.bundle.card, service.cache, file.filename, raw, raw_dtype, started)

        body = await service.analyze(
            file.file,
            encode,
            samples=samples,
            seed=seed,
            calibrated=calibrated,
            resolution=resolution,
            disconnected=request.is_disconnected,
            tta=tta,
        )
        if output_format == "npz":
            disposition = f'attachment; filename="{download_name(file.filename, "_maps.npz")}"'
            return Response(body, media_type=NPZ_MEDIA_TYPE, headers={"Content-Disposition": disposition})
        return Response(body, media_type="application/json")

    return router
