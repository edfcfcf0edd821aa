"""Encode an :class:`~app.engine.analysis.Analysis` as the API's JSON.

The compact answer (the default, and what the page reads) carries every panel map as an 8-bit greyscale PNG of its
position on the fixed colour scale, the labels as an 8-bit PNG and the input as a JPEG, all at the analysed size, plus
the id under which the analysis is kept for downloads and exact pixel values. ``raw=true`` adds colour PNGs and the
float arrays as base64.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import re
import time
from typing import Any, Literal

import numpy as np
from PIL import Image

from app.defaults import JPEG_QUALITY
from app.engine.analysis import Analysis
from app.io.bundle import ModelCard
from app.io.encoding import map_pngs, summarise
from app.io.npz import full_arrays, label_dtype
from app.io.zarr_store import store_bytes
from app.maps.regions import Region
from app.maps.registry import MAPS, PREDICTION_DESCRIPTION
from app.web.api_paths import ANALYSES_PATH as ANALYSES_PATH  # re-exported: routes/analyses.py imports it from here
from app.web.cache import AnalysisCache, CachedAnalysis
from app.web.encode_adversarial import adversarial_out
from app.web.png import grey_png
from app.web.scales import quantise
from app.web.schemas.analysis import AnalyzeResponse, MapOut, PredictionOut, RawArray, Timings
from app.web.security.api_keys import current_owner

REGION_DIGITS = 6
ERROR_DIGITS = 3
DOWNLOAD_STEM_CHARS = 200

RawDtype = Literal["float32", "float16"]


def raw_array(values: np.ndarray, dtype: Literal["float32", "float16", "uint8"]) -> RawArray:
    """Pack an array as base64 of its little-endian bytes in C order.

    Args:
        values: Any numeric array.
        dtype: Element type to send.
    """
    arr = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    return RawArray(dtype=dtype, shape=list(arr.shape), data=base64.b64encode(arr.tobytes()).decode("ascii"))


def decode_raw(raw: RawArray) -> np.ndarray:
    """The inverse of :func:`raw_array` (used by tests and Python clients)."""
    dtype = np.dtype(raw.dtype).newbyteorder("<")
    return np.frombuffer(base64.b64decode(raw.data), dtype=dtype).reshape(raw.shape)


def data_url(payload: bytes, mime: str = "image/png") -> str:
    """A ``data:`` URL of ``payload``."""
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def jpeg_bytes(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Encode ``(H, W, 3)`` uint8 as JPEG (for display of the input only)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def display_image(analysis: Analysis) -> np.ndarray:
    """The input at the size of the answer's maps: the analysed size (resized when the analysis ran on a resized copy), or
    a streamed analysis's previews' (its ``image`` already is)."""
    if analysis.stored is not None or analysis.image.shape[:2] == analysis.analysed_size:
        return analysis.image
    image = Image.fromarray(np.ascontiguousarray(analysis.image))
    return np.asarray(image.resize((analysis.width, analysis.height), Image.Resampling.BILINEAR, reducing_gap=2.0))


def download_name(filename: str | None, suffix: str) -> str:
    """A safe attachment file name derived from the upload's name: ASCII letters, digits and ``._-``, the stem cut to
    :data:`DOWNLOAD_STEM_CHARS` characters (so with any suffix of ours the name stays under the usual 255-byte limit)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", (filename or "").rsplit("/", 1)[-1].rsplit(".", 1)[0])
    stem = stem[:DOWNLOAD_STEM_CHARS].strip("._")
    return f"{stem or 'analysis'}{suffix}"


def kept_bytes(analysis: Analysis, scored: bool = False) -> int:
    """Bytes :func:`keep` would hold for an analysis: float32 maps and ``(C, H, W)`` arrays, the label map (and error codes,
    conformal set sizes);
    for a streamed analysis its previews and its store's bytes on disk."""
    if analysis.stored is not None:
        return sum(int(m.nbytes) for m in analysis.maps.values()) + int(analysis.prediction.nbytes) + store_bytes(analysis.stored.path)
    label_bytes = label_dtype(analysis.num_classes).itemsize
    levels = len(analysis.sets.sizes) if analysis.sets is not None else 0
    return analysis.width * analysis.height * (4 * len(MAPS) + label_bytes + 3 * 4 * analysis.num_classes + (1 if scored else 0) + levels)


def keep(cache: AnalysisCache, analysis: Analysis, card: ModelCard, filename: str | None, error_codes: np.ndarray | None = None) -> str | None:
    """Put a copy of the analysis's arrays in ``cache``, owned by the request's API key (:func:`~app.web.security.api_keys.current_owner`);
    the id, or ``None`` when it is too large to keep (then nothing is copied)."""
    if kept_bytes(analysis, error_codes is not None) > cache.max_bytes:
        return None
    classes = card.classes
    if analysis.stored is not None:
        previews = {**analysis.maps, "prediction": analysis.prediction}
        stored = CachedAnalysis(previews, [c.name for c in classes], [c.colour for c in classes], filename=filename, owner=current_owner())
        stored.store, stored.size, stored.disk_bytes = analysis.stored.path, analysis.stored.size, store_bytes(analysis.stored.path)
        return cache.put(stored)
    arrays = full_arrays(analysis)
    if error_codes is not None:
        arrays["error"] = error_codes.astype(np.uint8)
    entry = CachedAnalysis(arrays, [c.name for c in classes], [c.colour for c in classes], filename=filename, owner=current_owner())
    if analysis.sets is not None:
        entry.set_thresholds = dict(analysis.sets.thresholds)
        entry.class_masks = list(analysis.sets.class_masks)
    return cache.put(entry)


def map_url(analysis_id: str | None, name: str) -> str | None:
    """GET URL of one map's colour PNG (``prediction`` and ``error`` included)."""
    return None if analysis_id is None else f"{ANALYSES_PATH}/{analysis_id}/maps/{name}.png"


def _significant(value: float, digits: int = REGION_DIGITS) -> float:
    return float(f"{value:.{digits}g}")


def region_rows(regions: list[Region]) -> list[dict[str, Any]]:
    """The region table as JSON rows, ``share`` and the map means to :data:`REGION_DIGITS` significant digits (a long table stays small)."""
    return [
        {
            "kind": r.kind,
            "class_index": r.class_index,
            "class_name": r.class_name,
            "component": r.component,
            "pixels": r.pixels,
            "share": _significant(r.share),
            "bbox": list(r.bbox),
            "means": {k: _significant(v) for k, v in r.means.items()},
            "errors": {k: None if v is None else _significant(v, ERROR_DIGITS) for k, v in r.errors.items()},
            "sure_share": None if r.sure_share is None else _significant(r.sure_share),
        }
        for r in regions
    ]


def conformal_out(analysis: Analysis, card: ModelCard, analysis_id: str | None) -> dict[str, Any] | None:
    """The answer's ``conformal``: each level's set sizes as a greyscale PNG with its shares, the guarantee, and each class
    mask's threshold, share of this image and URL; ``None`` without sets."""
    sets = analysis.sets
    if sets is None:
        return None
    levels = [{**summary, "set_size_png": data_url(grey_png(sets.sizes[summary["alpha"]]))} for summary in sets.summaries()]
    names = [c.name for c in card.classes]
    masks = []
    for name, alpha, threshold in sets.class_masks:
        index = names.index(name) if name in names else None
        share = float((analysis.mean_probs[index] >= threshold).mean()) if index is not None and analysis.class_arrays is not None else 0.0
        url = None if analysis_id is None else f"{ANALYSES_PATH}/{analysis_id}/masks/{name}.png?alpha={alpha:g}"
        masks.append({"class_name": name, "alpha": alpha, "threshold": threshold, "share": share, "url": url})
    return {"levels": levels, "default_alpha": sets.default_alpha, "guarantee": sets.guarantee, "approximate": sets.approximate, "class_masks": masks}


def build_response(
    analysis: Analysis,
    card: ModelCard,
    analysis_id: str | None,
    expires_in: float,
    raw: bool = False,
    raw_dtype: RawDtype = "float32",
    started: float | None = None,
    encode_started: float | None = None,
) -> AnalyzeResponse:
    """The JSON response of ``POST /api/v1/analyze``.

    Args:
        analysis: The analysis to encode.
        card: The model's card (classes, colours, temperature).
        analysis_id: Its id in the cache (``None``: not kept).
        expires_in: Seconds the id stays valid after its last use.
        raw: Add colour PNGs, raw maps, labels and class probabilities.
        raw_dtype: Element type of the raw maps and probabilities.
        started: ``time.perf_counter()`` when the request began, for ``timings.total``.
        encode_started: ``time.perf_counter()`` when encoding began (keeping the analysis included), for ``timings.encode``.
    """
    t0 = time.perf_counter() if encode_started is None else encode_started
    num_classes = analysis.num_classes
    info = summarise(analysis, card)
    pngs = map_pngs(analysis, card) if raw else {}
    maps = [
        MapOut(
            name=spec.name,
            description=info.maps[spec.name].description,
            range=(float(analysis.ranges[spec.name][0]), float(analysis.ranges[spec.name][1])),
            display_power=spec.display_power,
            mean=info.maps[spec.name].mean,
            mean_error=info.maps[spec.name].mean_error,
            colourmap=spec.colourmap,
            quantised=data_url(grey_png(quantise(spec, analysis.maps[spec.name], num_classes))) if spec.panel is not None else None,
            url=map_url(analysis_id, spec.name),
            png=data_url(pngs[spec.name]) if raw else None,
            values=raw_array(analysis.maps[spec.name], raw_dtype) if raw else None,
        )
        for spec in MAPS
    ]
    small = num_classes <= 256
    prediction = PredictionOut(
        description=PREDICTION_DESCRIPTION,
        labels_png=data_url(grey_png(analysis.prediction.astype(np.uint8))) if small else None,
        url=map_url(analysis_id, "prediction"),
        png=data_url(pngs["prediction"]) if raw else None,
        labels=raw_array(analysis.prediction, "uint8") if raw and small else None,
    )
    image = data_url(jpeg_bytes(display_image(analysis)), "image/jpeg")
    mean_probs = raw_array(analysis.mean_probs, raw_dtype) if raw and analysis.stored is None else None
    encode = time.perf_counter() - t0
    timings = Timings(
        decode=analysis.timings.get("decode", 0.0),
        inference=analysis.timings.get("inference", 0.0),
        regions=analysis.timings.get("regions", 0.0),
        encode=encode,
        total=time.perf_counter() - (started if started is not None else t0),
    )
    facts = {k: v for k, v in dataclasses.replace(info, regions=[]).to_json().items() if k not in ("maps", "timings")}
    facts["regions"] = region_rows(analysis.regions)
    if analysis.stored is not None:
        facts["height"], facts["width"] = analysis.prediction.shape
        facts["preview_factor"] = analysis.stored.factor
    return AnalyzeResponse.model_validate(
        {
            **facts,
            "analysis_id": analysis_id,
            "expires_in": expires_in,
            "npz_url": None if analysis_id is None else f"{ANALYSES_PATH}/{analysis_id}/maps.npz",
            "pixel_url": None if analysis_id is None else f"{ANALYSES_PATH}/{analysis_id}/pixel",
            "model_temperature": card.temperature,
            "timings": timings,
            "image": image,
            "prediction": prediction,
            "maps": maps,
            "mean_probs": mean_probs,
            "conformal": conformal_out(analysis, card, analysis_id),
            "adversarial": adversarial_out(analysis.adversarial, num_classes) if analysis.adversarial is not None else None,
        }
    )


def analysis_json(
    analysis: Analysis,
    card: ModelCard,
    cache: AnalysisCache,
    filename: str | None,
    raw: bool = False,
    raw_dtype: RawDtype = "float32",
    started: float | None = None,
) -> bytes:
    """Keep the analysis in ``cache`` and answer :func:`build_response` as JSON bytes."""
    t0 = time.perf_counter()
    analysis_id = keep(cache, analysis, card, filename)
    return build_response(analysis, card, analysis_id, cache.ttl, raw, raw_dtype, started, t0).model_dump_json().encode()
