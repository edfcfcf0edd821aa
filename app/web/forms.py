"""Form fields shared by ``POST /api/v1/analyze`` and ``POST /api/v1/evaluate``, as ``Annotated`` aliases, and their shared error responses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import File, Form, UploadFile

from app.defaults import MAX_SEED
from app.error_codes import ErrorCode
from app.web.errors import error_responses

__all__ = ["GATE_RESPONSES", "CalibratedForm", "ImageFileForm", "ModelForm", "RawDtypeForm", "RawForm", "ResolutionForm", "SeedForm", "TtaForm", "samples_form"]

GATE_RESPONSES: dict[int | str, dict[str, Any]] = error_responses(
    ErrorCode.BODY_TIMEOUT,
    ErrorCode.BODY_TOO_LARGE,
    ErrorCode.TOO_MANY_PIXELS,
    ErrorCode.TOO_MUCH_WORK,
    ErrorCode.NOT_READY,
    ErrorCode.OVERLOADED,
    ErrorCode.TIMEOUT,
)

ImageFileForm = Annotated[UploadFile, File(description="The image: PNG, JPEG, TIFF, BMP, GIF (first frame) or WebP.")]
SeedForm = Annotated[int, Form(ge=0, le=MAX_SEED, description="Seed of the dropout masks; same seed, same device, same maps.")]
CalibratedForm = Annotated[bool, Form(description="Apply the model's fitted temperature τ to the logits (τ = 1 when false).")]
ModelForm = Annotated[
    str | None,
    Form(description="Name of the served model to use (GET /api/v1/models lists them); omitted: the default, the first. An unknown name → 422 unknown_model."),
]

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
TtaForm = Annotated[
    Literal["none", "flips", "flips+scales", "photometric"],
    Form(
        description="Test-time augmentation: none (default); flips (4 passes: as is, mirrored left-right, top-bottom, both); flips+scales "
        "(the 4 flips at scales 1, 0.75 and 1.25: 12 passes); photometric (as is and 3 seeded brightness/contrast/gamma jitters: 4 passes). "
        "Each pass's probabilities are mapped back to the image and pooled with its MC samples (T per pass; T = 0: the pass itself) into "
        "the same maps; with an ensemble model every member runs every pass. The answer's `method` and `passes` say what ran.",
    ),
]


def samples_form(max_samples: int) -> Any:
    """The ``samples`` form field, bounded by the served ``max_samples`` (a setting, so built with the router)."""
    return Annotated[
        int | None,
        Form(
            ge=0,
            le=max_samples,
            description=f"MC-dropout samples T, 0 to {max_samples}; 0 runs the deterministic pass only. Omitted: the model's default "
            "(GET /api/v1/models: default_samples).",
        ),
    ]
