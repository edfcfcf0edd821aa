"""Encode an :class:`~app.engine.analysis.Analysis` as the API's JSON (PNG data URLs and base64 raw arrays)."""

from __future__ import annotations

import base64
import io
import re
import time
from typing import Literal

import numpy as np
from PIL import Image

from app.engine.analysis import Analysis
from app.io.bundle import ModelCard
from app.io.encoding import map_pngs, summarise
from app.maps.registry import MAPS, PREDICTION_DESCRIPTION
from app.web.schemas.analysis import AnalyzeResponse, MapOut, PredictionOut, RawArray, Timings

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


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encode ``(H, W, 3)`` uint8 as JPEG (for display of the input only)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def download_name(filename: str | None, suffix: str) -> str:
    """A safe attachment file name derived from the upload's name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", (filename or "").rsplit("/", 1)[-1].rsplit(".", 1)[0]).strip("._")
    return f"{stem or 'analysis'}{suffix}"


def build_response(analysis: Analysis, card: ModelCard, raw: bool = True, raw_dtype: RawDtype = "float32", started: float | None = None) -> AnalyzeResponse:
    """The JSON response of ``POST /api/v1/analyze``.

    Args:
        analysis: The analysis to encode.
        card: The model's card (classes, colours, temperature).
        raw: Include the raw maps, labels and class probabilities.
        raw_dtype: Element type of the raw maps and probabilities.
        started: ``time.perf_counter()`` when the request began, for ``timings.total``.
    """
    t0 = time.perf_counter()
    info = summarise(analysis, card)
    pngs = map_pngs(analysis, card)
    maps = [
        MapOut(
            name=spec.name,
            description=spec.meaning,
            range=(float(analysis.ranges[spec.name][0]), float(analysis.ranges[spec.name][1])),
            mean=info.maps[spec.name].mean,
            colourmap=spec.colourmap,
            png=data_url(pngs[spec.name]),
            values=raw_array(analysis.maps[spec.name], raw_dtype) if raw else None,
        )
        for spec in MAPS
    ]
    prediction = PredictionOut(
        description=PREDICTION_DESCRIPTION,
        png=data_url(pngs["prediction"]),
        labels=raw_array(analysis.prediction, "uint8") if raw and len(card.classes) <= 256 else None,
    )
    image = data_url(jpeg_bytes(analysis.image), "image/jpeg")
    mean_probs = raw_array(analysis.mean_probs, raw_dtype) if raw else None
    encode = time.perf_counter() - t0
    timings = Timings(
        decode=analysis.timings.get("decode", 0.0),
        inference=analysis.timings.get("inference", 0.0),
        regions=analysis.timings.get("regions", 0.0),
        encode=encode,
        total=time.perf_counter() - (started if started is not None else t0),
    )
    facts = {k: v for k, v in info.to_json().items() if k not in ("maps", "timings")}
    return AnalyzeResponse.model_validate(
        {
            **facts,
            "model_temperature": card.temperature,
            "timings": timings,
            "image": image,
            "prediction": prediction,
            "maps": maps,
            "mean_probs": mean_probs,
        }
    )


def response_json(analysis: Analysis, card: ModelCard, raw: bool = True, raw_dtype: RawDtype = "float32", started: float | None = None) -> bytes:
    """:func:`build_response` serialised to JSON bytes."""
    return build_response(analysis, card, raw, raw_dtype, started).model_dump_json().encode()
