"""The form of ``POST /api/v1/analyze`` and ``POST /api/v1/evaluate``: the uploads as ``Annotated`` aliases, the options as one
Pydantic form model that becomes the :class:`~app.request.AnalysisRequest`, their shared error responses, and the route
class that parses their uploads (:class:`UploadRoute`).

An upload's file name is metadata: any length is accepted (python-multipart's own limit, 4 KiB per part header line,
refused a long name with 400) and it is cut to :data:`UPLOAD_NAME_CHARS` characters, its extension kept
(:func:`short_name`), before anything keeps, echoes or derives a download name from it.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from dataclasses import replace
from functools import partial
from typing import Annotated, Any, Literal, cast

import python_multipart
from fastapi import File, Request, Response, UploadFile
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, field_validator
from python_multipart.multipart import parse_options_header
from starlette import formparsers
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException

from app.defaults import (
    ADVERSARIAL_MAX_PIXELS,
    ADVERSARIAL_STEPS,
    DEFAULT_ADVERSARIAL_EPSILONS,
    DEFAULT_RESOLUTION,
    DEFAULT_SEED,
    IGNORE_INDEX,
    MAX_ADVERSARIAL_EPSILONS,
    MAX_ADVERSARIAL_STEPS,
    MAX_LABEL,
    MAX_SEED,
    Resolution,
    TtaMode,
)
from app.error_codes import ErrorCode
from app.io.npz import parse_save
from app.request import AnalysisRequest, parse_epsilons
from app.web.errors import ApiError, error_responses
from app.web.jobs import JobMode

__all__ = [
    "GATE_RESPONSES",
    "MAX_PART_HEADER_BYTES",
    "UPLOAD_NAME_CHARS",
    "AnalysisForm",
    "AnalyzeForm",
    "EvaluateForm",
    "ImageFileForm",
    "MaskFileForm",
    "UploadRoute",
    "short_name",
]

UPLOAD_NAME_CHARS = 255
MAX_PART_HEADER_BYTES = 256 * 1024
MAX_EXTENSION_CHARS = 16
ELLIPSIS = "\u2026"

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
MaskFileForm = Annotated[
    UploadFile, File(description="The ground truth: a single-channel PNG (mode L, P, I, I;16 or 1) of class indices, the image's width and height.")
]


class AnalysisForm(BaseModel):
    """The options of one analysis, as form fields (shared by analyze and evaluate)."""

    model_config = ConfigDict(populate_by_name=True)

    samples: int | None = Field(
        default=None,
        ge=0,
        description="MC-dropout samples T, 0 to the server's max_samples (GET /api/v1/models: max_samples); 0 runs the deterministic pass "
        "only. Omitted: the model's default (GET /api/v1/models: default_samples).",
    )
    seed: int = Field(default=DEFAULT_SEED, ge=0, le=MAX_SEED, description="Seed of the dropout masks; same seed, same device, same maps.")
    calibrated: bool = Field(default=False, description="Apply the model's fitted temperature τ to the logits (τ = 1 when false).")
    resolution: Resolution = Field(
        default=DEFAULT_RESOLUTION,
        description="working (default): an input whose long side exceeds the model's working size (GET /api/v1/models: working_size) is "
        "resized so that its long side equals it, and the maps come at that analysed size; smaller inputs are analysed as they are. "
        "full: every input pixel (large images in overlapping tiles, within the memory budget).",
    )
    tta: TtaMode | None = Field(
        default=None,
        description="Test-time augmentation. Omitted: the model's default (GET /api/v1/models: default_tta; none unless its card says). "
        "none; flips (4 passes: as is, mirrored left-right, top-bottom, both); flips+scales "
        "(the 4 flips at scales 1, 0.75 and 1.25: 12 passes); photometric (as is and 3 seeded brightness/contrast/gamma jitters: 4 passes). "
        "Each pass's probabilities are mapped back to the image and pooled with its MC samples (T per pass; T = 0: the pass itself) into "
        "the same maps; with an ensemble model every member runs every pass. The answer's `method` and `passes` say what ran.",
    )
    raw: bool = Field(
        default=False,
        description="Add the colour PNGs (data URLs) and the raw float maps, labels and MC-mean class probabilities (base64) to the answer. "
        "Default false: the compact answer (greyscale PNGs of the quantised maps and labels, a JPEG of the input), with exact values by id.",
    )
    raw_dtype: Literal["float32", "float16"] = Field(default="float32", description="With raw=true: element type of the raw maps and probabilities.")
    model: str | None = Field(
        default=None,
        description="Name of the served model to use (GET /api/v1/models lists them); omitted: the default, the first. An unknown name → 422 unknown_model.",
    )
    mode: JobMode = Field(
        default="auto",
        description="auto (default): answer at once when the work (analysed pixels × passes × (samples + 1)) fits the server's budget, "
        "else run it as a job: 202 with the job's status (job_id, status_url, events_url, result_url; Location: status_url), progress by "
        "GET status_url or server-sent events, DELETE status_url cancels, GET result_url gives this answer once done. job: always a job. "
        "sync: never a job (over the budget → 413 too_much_work).",
    )

    def analysis_request(self, default_samples: int, max_samples: int, min_area: int, *, default_tta: TtaMode) -> AnalysisRequest:
        """The request these fields ask for; omitted samples are ``default_samples``, an omitted tta is ``default_tta``.

        Raises:
            ApiError: 422 ``validation_error`` when ``samples`` exceeds the server's ``max_samples``.
        """
        samples = default_samples if self.samples is None else self.samples
        if samples > max_samples:
            raise ApiError(ErrorCode.VALIDATION_ERROR, f"samples: Input should be less than or equal to {max_samples}", "samples")
        tta = default_tta if self.tta is None else self.tta
        return AnalysisRequest(samples=samples, seed=self.seed, calibrated=self.calibrated, resolution=self.resolution, tta=tta, min_area=min_area)


SAVE_DESCRIPTION = (
    "The (C, H, W) float32 arrays the .npz adds to the maps, comma-separated: probs (deterministic softmax), mean_probs "
    "(MC mean), class_variance (per-class MC variance), or all. Default empty: the maps (float16; feature_distance float32) "
    "and the label map prediction (uint8 up to 256 classes) only. An unknown name → 422 validation_error."
)


class AnalyzeForm(AnalysisForm):
    """The options of ``POST /api/v1/analyze``."""

    output_format: Literal["json", "npz"] = Field(
        default="json", alias="format", description="json: the analysis as JSON; npz: a NumPy archive of the raw arrays."
    )
    save: str = Field(default="", max_length=200, description=f"With format=npz: {SAVE_DESCRIPTION}")

    @field_validator("save")
    @classmethod
    def _known_arrays(cls, value: str) -> str:
        parse_save(value)
        return value

    @property
    def saved_arrays(self) -> tuple[str, ...]:
        """The ``(C, H, W)`` arrays ``save`` names (:func:`app.io.npz.parse_save`)."""
        return parse_save(self.save)

    adversarial: bool = Field(
        default=False,
        description="Also attack the image (untargeted L∞: FGSM then adversarial_steps PGD steps on its deterministic prediction, at each "
        "radius of adversarial_epsilons) and answer `adversarial`: per radius the share of pixels flipped, the flip-ε map, the perturbed "
        "images and their predictions. Off by default: it costs backward passes, counted in the work ((steps + 1) × 3 + 2 passes a radius); "
        f"at most {ADVERSARIAL_MAX_PIXELS:,} analysed pixels (413 too_much_work beyond).",
    )
    adversarial_epsilons: str = Field(
        default=",".join(f"{e:g}" for e in DEFAULT_ADVERSARIAL_EPSILONS),
        max_length=200,
        description=f"With adversarial=true: the L∞ radii in pixel levels of [0, 255], comma-separated (2 or 2/255 mean 2/255), each in (0, 255], "
        f"at most {MAX_ADVERSARIAL_EPSILONS}. Anything else → 422 validation_error.",
    )
    adversarial_steps: int = Field(
        default=ADVERSARIAL_STEPS, ge=0, le=MAX_ADVERSARIAL_STEPS, description="With adversarial=true: PGD steps after the FGSM step at each radius."
    )

    @field_validator("adversarial_epsilons")
    @classmethod
    def _radii(cls, value: str) -> str:
        radii = parse_epsilons(value)
        if not radii:
            raise ValueError("list at least one radius, e.g. 1,2,4,8")
        AnalysisRequest(adversarial=radii)
        return value

    def analysis_request(self, default_samples: int, max_samples: int, min_area: int, *, default_tta: TtaMode) -> AnalysisRequest:
        """:meth:`AnalysisForm.analysis_request` with the adversarial attack when asked for."""
        request = super().analysis_request(default_samples, max_samples, min_area, default_tta=default_tta)
        if not self.adversarial:
            return request
        return replace(request, adversarial=parse_epsilons(self.adversarial_epsilons), adversarial_steps=self.adversarial_steps)


class EvaluateForm(AnalysisForm):
    """The options of ``POST /api/v1/evaluate``."""

    ignore_index: int = Field(default=IGNORE_INDEX, ge=0, le=MAX_LABEL, description="Mask value that is not scored.")
    ood_label: int | None = Field(
        default=None,
        ge=0,
        le=MAX_LABEL,
        description="Mask value marking out-of-distribution pixels (may equal ignore_index); enables ood_detection. Omit for none.",
    )


def short_name(name: str, limit: int = UPLOAD_NAME_CHARS) -> str:
    """``name`` if it has at most ``limit`` characters; else its start and ``…`` then its extension (up to
    :data:`MAX_EXTENSION_CHARS` characters with the dot), ``limit`` characters in all."""
    if len(name) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    suffix = f"{dot}{extension}" if stem and len(extension) < MAX_EXTENSION_CHARS else ""
    return f"{name[: limit - len(suffix) - len(ELLIPSIS)]}{ELLIPSIS}{suffix}"


_Parse = Callable[[formparsers.MultiPartParser], Coroutine[Any, Any, FormData]]


def _long_header_parse() -> _Parse:
    """Starlette's own :meth:`~starlette.formparsers.MultiPartParser.parse`, whose python-multipart parser accepts part
    header lines up to :data:`MAX_PART_HEADER_BYTES` (the body as a whole stays bounded by ``SEGU_MAX_BODY_BYTES``)."""
    parse = formparsers.MultiPartParser.parse
    parser = partial(python_multipart.MultipartParser, max_header_size=MAX_PART_HEADER_BYTES)
    names = {**vars(formparsers), "multipart": types.SimpleNamespace(MultipartParser=parser)}
    return cast(_Parse, types.FunctionType(parse.__code__, names, parse.__name__, parse.__defaults__, parse.__closure__))


class _UploadParser(formparsers.MultiPartParser):
    parse = _long_header_parse()


class _UploadRequest(Request):
    async def _get_form(self, *, max_files: int | float = 1000, max_fields: int | float = 1000, max_part_size: int = 1024 * 1024) -> FormData:
        if self._form is None and parse_options_header(self.headers.get("content-type"))[0] == b"multipart/form-data":
            try:
                async with aclosing(self.stream()) as stream:
                    parser = _UploadParser(self.headers, stream, max_files=max_files, max_fields=max_fields, max_part_size=max_part_size)
                    self._form = await parser.parse()
            except formparsers.MultiPartException as exc:
                raise HTTPException(status_code=400, detail=exc.message) from exc
            for _, value in self._form.multi_items():
                if isinstance(value, StarletteUploadFile) and value.filename is not None:
                    value.filename = short_name(value.filename)
        return await super()._get_form(max_files=max_files, max_fields=max_fields, max_part_size=max_part_size)


class UploadRoute(APIRoute):
    """The route class of the upload endpoints: file names of any length, cut by :func:`short_name` before the endpoint sees them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given the request as :class:`_UploadRequest`."""
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(_UploadRequest(request.scope, request.receive))

        return route
