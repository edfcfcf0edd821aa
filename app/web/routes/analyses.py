"""``GET /api/v1/analyses/{analysis_id}/...``: a kept analysis's PNGs, NPZ and exact pixel values, without re-running it.

With API keys on, only the key that made an analysis finds it: any other key gets the 404 of an unknown id.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path as PathLike
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Path, Query, Response

from app.defaults import TOP_CLASSES
from app.error_codes import ErrorCode
from app.io.npz import archive_arrays, parse_save, write_npz
from app.io.rendering import ERROR_NAMES, png_bytes, render_errors, render_labels
from app.io.zarr_store import store_npz, store_pixel
from app.maps.registry import MAP_NAMES, get_map
from app.metrics.risk_control import class_set
from app.web.cache import AnalysisCache, CachedAnalysis
from app.web.deps import ServicesDep
from app.web.encoding import ANALYSES_PATH, download_name
from app.web.errors import ApiError
from app.web.forms import SAVE_DESCRIPTION
from app.web.png import grey_png
from app.web.scales import colourise
from app.web.schemas.analysis import ClassProbability, ErrorResponse, PixelResponse
from app.web.security.api_keys import current_owner

router = APIRouter(prefix=ANALYSES_PATH, tags=["analyses"])

NPZ_MEDIA_TYPE = "application/x-npz"
T = TypeVar("T")
IdPath = Annotated[str, Path(description="The analysis_id of an analyze or evaluate answer.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorResponse,
        "description": "No analysis with this id: it expired (or was evicted), never existed, or (with API keys) another key made it. Run it again.",
    },
    503: {"model": ErrorResponse, "description": "The models are still loading."},
}


def lookup(cache: AnalysisCache, analysis_id: str) -> CachedAnalysis:
    """The kept analysis ``analysis_id`` of the request's API key, of whichever model (the models share one cache; an entry
    carries its classes).

    Raises:
        ApiError: 404 ``analysis_not_found`` naming the id, the same for an id of another key as for one that never existed.
    """
    entry = cache.get(analysis_id, current_owner())
    if entry is None:
        ttl = cache.ttl
        raise ApiError(
            ErrorCode.ANALYSIS_NOT_FOUND,
            f"analysis {analysis_id!r} has expired or never existed: analyses are kept for {ttl:g} s after their last use "
            f"(at most {cache.max_entries} of them); analyse the image again for a new id",
            "analysis_id",
        )
    return entry


def _colour_png(entry: CachedAnalysis, name: str) -> bytes:
    arrays = entry.arrays
    if name == "prediction":
        return png_bytes(render_labels(arrays["prediction"], entry.class_colours))
    if name == "error" and "error" in arrays:
        return png_bytes(render_errors(arrays["error"]))
    if name in MAP_NAMES:
        return png_bytes(colourise(get_map(name), arrays[name], len(entry.class_names)))
    names = ", ".join([*MAP_NAMES, "prediction", *(["error"] if "error" in arrays else [])])
    raise ApiError(ErrorCode.NOT_FOUND, f"no map {name!r} in this analysis; the maps are {names}", "name")


@router.get(
    "/{analysis_id}/maps/{name}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The map as a colour PNG at the analysed size."}, **NOT_FOUND},
    summary="One map of a kept analysis as a PNG",
)
async def map_png(
    services: ServicesDep,
    analysis_id: IdPath,
    name: Annotated[str, Path(description=f"A map's name ({', '.join(MAP_NAMES)}), prediction, or (for an evaluation) error.")],
) -> Response:
    """The map on its fixed colour scale (the page's colours), the prediction in class colours, or the error map of an evaluation."""
    entry = lookup(services.cache, analysis_id)
    body = await anyio.to_thread.run_sync(_colour_png, entry, name)
    disposition = f'attachment; filename="{download_name(entry.filename, f"_{name}.png")}"'
    return Response(body, media_type="image/png", headers={"Content-Disposition": disposition})


def _mask_png(entry: CachedAnalysis, name: str, alpha: float) -> bytes:
    for class_name, level, threshold in entry.class_masks:
        if class_name == name and abs(level - alpha) < 1e-9 and "mean_probs" in entry.arrays:
            inside = entry.arrays["mean_probs"][entry.class_names.index(name)] >= threshold
            return grey_png(np.where(inside, 255, 0).astype(np.uint8))
    known = ", ".join(sorted({f"{c} at alpha {a:g}" for c, a, _ in entry.class_masks})) or "none (the model has no calibrated class masks)"
    raise ApiError(ErrorCode.NOT_FOUND, f"no calibrated mask of class {name!r} at alpha {alpha:g} in this analysis; there are: {known}", "name")


@router.get(
    "/{analysis_id}/masks/{name}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The class mask, white inside, at the analysed size."}, **NOT_FOUND},
    summary="A calibrated class mask of a kept analysis as a PNG",
)
async def class_mask_png(
    services: ServicesDep,
    analysis_id: IdPath,
    name: Annotated[str, Path(description="A class with a calibrated mask (see conformal.class_masks of the answer).")],
    alpha: Annotated[float, Query(gt=0.0, lt=1.0, description="One of the calibrated levels.")] = 0.1,
) -> Response:
    """The pixels whose MC-mean probability of the class reaches the calibrated threshold: for an image showing the class, the
    expected share of its true pixels outside the mask is at most alpha (conformal false-negative-rate control)."""
    entry = lookup(services.cache, analysis_id)
    body = await anyio.to_thread.run_sync(_mask_png, entry, name, alpha)
    disposition = f'attachment; filename="{download_name(entry.filename, f"_{name}_mask.png")}"'
    return Response(body, media_type="image/png", headers={"Content-Disposition": disposition})


@router.get(
    "/{analysis_id}/maps.npz",
    response_class=Response,
    responses={200: {"content": {NPZ_MEDIA_TYPE: {}}, "description": "The arrays of POST analyze with format=npz (and error codes)."}, **NOT_FOUND},
    summary="The raw arrays of a kept analysis as .npz",
)
async def maps_npz(
    services: ServicesDep,
    analysis_id: IdPath,
    save: Annotated[str, Query(max_length=200, description=SAVE_DESCRIPTION)] = "",
) -> Response:
    """The maps as float16 (`feature_distance` float32), the label map `prediction` (uint8 up to 256 classes, else uint16), `error`
    codes (uint8) for an evaluation, and the (C, H, W) float32 `probs`, `mean_probs`, `class_variance` that `save` names; deflated, read by
    `numpy.load`."""
    try:
        saved = parse_save(save)
    except ValueError as exc:
        raise ApiError(ErrorCode.VALIDATION_ERROR, str(exc), "save") from exc
    entry = lookup(services.cache, analysis_id)
    if entry.store is not None:
        body = await anyio.to_thread.run_sync(_stored, analysis_id, lambda path: store_npz(path, saved), entry.store, "save")
    else:
        body = await anyio.to_thread.run_sync(write_npz, archive_arrays(entry.arrays, saved))
    disposition = f'attachment; filename="{download_name(entry.filename, "_maps.npz")}"'
    return Response(body, media_type=NPZ_MEDIA_TYPE, headers={"Content-Disposition": disposition})


def _check_inside(value: int, size: int, field: str, side: str) -> None:
    if value >= size:
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"{field}: {value} is outside the analysed image, whose {side} is {size} (0 to {size - 1})", field)


@router.get(
    "/{analysis_id}/pixel",
    response_model=PixelResponse,
    responses={422: {"model": ErrorResponse, "description": "x or y outside the image."}, **NOT_FOUND},
    summary="Exact values at one pixel of a kept analysis",
)
async def pixel(
    services: ServicesDep,
    analysis_id: IdPath,
    x: Annotated[int, Query(ge=0, description="Column in the analysed image (width and height of the answer).")],
    y: Annotated[int, Query(ge=0, description="Row in the analysed image.")],
) -> PixelResponse:
    """Exact values of every map at one pixel, the predicted class and the top classes of the MC-mean probabilities."""
    entry = lookup(services.cache, analysis_id)
    _check_inside(x, entry.width, "x", "width")
    _check_inside(y, entry.height, "y", "height")
    arrays = entry.arrays
    if entry.store is not None:
        values, label, stored_probs = await anyio.to_thread.run_sync(_stored, analysis_id, lambda path: store_pixel(path, y, x), entry.store, "analysis_id")
        probs = stored_probs if stored_probs is not None else np.zeros(len(entry.class_names))
    else:
        values = {name: float(arrays[name][y, x]) for name in MAP_NAMES}
        label = int(arrays["prediction"][y, x])
        probs = arrays["mean_probs"][:, y, x].astype(np.float64)
    order = np.argsort(-probs, kind="stable")[:TOP_CLASSES]

    def klass(index: int) -> ClassProbability:
        return ClassProbability(index=index, name=entry.class_names[index], probability=float(probs[index]))

    error = arrays.get("error")
    sets = {f"{alpha:g}": class_set(probs, threshold) for alpha, threshold in entry.set_thresholds.items()} if entry.set_thresholds else None
    return PixelResponse(
        analysis_id=analysis_id,
        x=x,
        y=y,
        values=values,
        prediction=klass(label),
        top=[klass(int(i)) for i in order],
        error=ERROR_NAMES[int(error[y, x])] if error is not None else None,
        sets=sets,
    )


def _stored(analysis_id: str, read: Callable[[PathLike], T], store: PathLike, field: str) -> T:
    """``read(store)`` of a kept analysis's store; a store evicted meanwhile is the 404 of an expired id, and a
    ``ValueError`` of the read (a class array the store lacks) a 422 on ``field``."""
    if not store.exists():
        raise ApiError(ErrorCode.ANALYSIS_NOT_FOUND, f"analysis {analysis_id!r} has expired: analyse the image again for a new id", "analysis_id")
    try:
        return read(store)
    except FileNotFoundError as exc:
        raise ApiError(ErrorCode.ANALYSIS_NOT_FOUND, f"analysis {analysis_id!r} has expired: analyse the image again for a new id", "analysis_id") from exc
    except ValueError as exc:
        raise ApiError(ErrorCode.VALIDATION_ERROR, str(exc), field) from exc
