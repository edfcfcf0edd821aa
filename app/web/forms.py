"""Form fields shared by ``POST /api/v1/analyze`` and ``POST /api/v1/evaluate``, as ``Annotated`` aliases, and their shared error responses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import File, Form, UploadFile

from app.defaults import MAX_SEED
from app.web.schemas.analysis import ErrorResponse

__all__ = ["GATE_RESPONSES", "CalibratedForm", "ImageFileForm", "RawDtypeForm", "RawForm", "ResolutionForm", "SeedForm"]

GATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    408: {"model": ErrorResponse, "description": "`body_timeout`: the body did not arrive within SEGU_BODY_TIMEOUT seconds; the connection is closed."},
    413: {
        "model": ErrorResponse,
        "description": "Body over the size limit, image over the pixel limit, or `too_much_work`: analysed pixels × (samples + 1) "
        "over SEGU_MAX_WORK by itself (the message says what would fit).",
    },
    503: {
        "model": ErrorResponse,
        "description": "`not_ready`: the model is still loading; `overloaded`: the queue (SEGU_MAX_QUEUE) or the work budget is full "
        "right now; retry after the `Retry-After` header's seconds.",
    },
    504: {"model": ErrorResponse, "description": "`timeout`: the analysis did not finish within SEGU_REQUEST_TIMEOUT seconds and was stopped."},
}

ImageFileForm = Annotated[UploadFile, File(description="The image: PNG, JPEG, TIFF, BMP, GIF (first frame) or WebP.")]
SeedForm = Annotated[int, Form(ge=0, le=MAX_SEED, description="Seed of the dropout masks; same seed, same device, same maps.")]
CalibratedForm = Annotated[bool, Form(description="Apply the model's fitted temperature τ to the logits (τ = 1 when false).")]

ResolutionForm = Annotated[
    Literal["working", "full"],
    Form(
        description="working (default): an input whose long side exceeds the model's working size (GET /api/v1/models: working_size) is "
        "resized so that its long side equals it, and the maps come at that analysed size; smaller inputs are analysed as they are. "
        "full: every input pixel (large images in overlapping tiles, within the memory budget)."
    ),
]
RawForm = Annotated[
    bool,
    Form(
        description="Add the colour PNGs (data URLs) and the raw float maps, labels and MC-mean class probabilities (base64) to the answer. "
        "Default false: the compact answer (greyscale PNGs of the quantised maps and labels, a JPEG of the input), with exact values by id."
    ),
]
RawDtypeForm = Annotated[Literal["float32", "float16"], Form(description="With raw=true: element type of the raw maps and probabilities.")]
