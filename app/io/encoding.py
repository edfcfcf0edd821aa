"""Encode an :class:`~app.engine.analysis.Analysis` as PNGs, NPZ and a typed summary."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from app.engine.analysis import Analysis
from app.io.bundle import ModelCard
from app.io.card import dropout_note
from app.io.rendering import map_images, png_bytes
from app.maps.regions import Region
from app.maps.registry import MAPS, MapSpec
from app.metrics.conformal import ImageCheck, not_checked
from app.metrics.image_ood import ImageOodResult

__all__ = ["AnalysisSummary", "ClassSummary", "MapSummary", "map_pngs", "npz_arrays", "npz_bytes", "summarise", "write_npz"]

_NPZ_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ClassSummary:
    """One class of the model, as outputs list it."""

    index: int
    name: str
    colour: str


@dataclass(frozen=True)
class MapSummary:
    """One map of an analysis: its fixed range, image mean, the MC standard error of that mean and its meaning."""

    range: tuple[float, float]
    mean: float
    description: str
    mean_error: float | None = None


@dataclass
class AnalysisSummary:
    """The facts of one analysis (``analysis.json``): model, geometry, settings, timings, map means and regions."""

    model: str
    classes: list[ClassSummary]
    width: int
    height: int
    samples: int
    seed: int
    device: str
    calibrated: bool
    temperature: float
    dropout_added_at_inference: bool
    dropout_note: str
    timings: dict[str, float]
    maps: dict[str, MapSummary]
    class_shares: dict[str, float]
    regions: list[Region]
    input_width: int
    input_height: int
    analysed_size: tuple[int, int]
    resolution: str
    image_ood: list[ImageOodResult]
    error_method: str = "unavailable"
    method: str = "mc_dropout"
    tta: str = "none"
    passes: int = 1
    unavailable: list[str] = field(default_factory=list)
    image_check: ImageCheck | None = None
    estimator: str = "sampled"
    enumerated_channels: int = 0
    effort: int = 0
    source: str | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``source`` left out when unset)."""
        out = asdict(self)
        if self.source is None:
            del out["source"]
        return out


def _unavailable(spec: MapSpec) -> str:
    missing = f"this bundle has no {spec.needs} ({spec.needs_command})" if spec.needs else "this bundle cannot compute it"
    return f"not available: {missing}; all zeros"


def class_summaries(card: ModelCard) -> list[ClassSummary]:
    """The card's classes with their indices."""
    return [ClassSummary(index=i, name=c.name, colour=c.colour) for i, c in enumerate(card.classes)]


def map_pngs(analysis: Analysis, card: ModelCard) -> dict[str, bytes]:
    """PNG bytes of the prediction and every map on its fixed scale."""
    return {name: png_bytes(img) for name, img in map_images(analysis, [c.colour for c in card.classes]).items()}


def npz_arrays(analysis: Analysis) -> dict[str, np.ndarray]:
    """Fresh copies of the arrays an ``.npz`` holds, in the dtypes it stores them.

    Keys: every map name (float32 ``(H, W)``), ``prediction`` (uint8 if at most 256 classes, else
    int32), ``mean_probs`` / ``probs`` / ``class_variance`` as float32 ``(C, H, W)``.
    """
    label_dtype = np.uint8 if analysis.num_classes <= 256 else np.int32
    arrays: dict[str, np.ndarray] = {spec.name: analysis.maps[spec.name].astype(np.float32) for spec in MAPS}
    arrays.update(
        prediction=analysis.prediction.astype(label_dtype),
        mean_probs=analysis.mean_probs.astype(np.float32),
        probs=analysis.probs.astype(np.float32),
        class_variance=analysis.class_variance.astype(np.float32),
    )
    return arrays


def write_npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An ``.npz`` (``numpy.load`` reads it) that deflates only the integer arrays.

    Float maps barely compress (deflate saves 8-20 % at 70-100 times the time of storing them), while
    label and code maps shrink to a few percent in about a millisecond; so floats are stored and
    integer arrays deflated.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, mode="w", allowZip64=True) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_NPZ_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED if np.issubdtype(array.dtype, np.integer) else zipfile.ZIP_STORED
            with archive.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def npz_bytes(analysis: Analysis) -> bytes:
    """The ``.npz`` of an analysis: :func:`npz_arrays` written by :func:`write_npz`."""
    return write_npz(npz_arrays(analysis))


def summarise(analysis: Analysis, card: ModelCard) -> AnalysisSummary:
    """The :class:`AnalysisSummary` of an analysis."""
    return AnalysisSummary(
        model=card.name,
        classes=class_summaries(card),
        width=analysis.width,
        height=analysis.height,
        samples=analysis.samples,
        seed=analysis.seed,
        device=analysis.device,
        calibrated=analysis.calibrated,
        temperature=analysis.temperature,
        dropout_added_at_inference=analysis.dropout_added_at_inference,
        dropout_note=dropout_note(not analysis.dropout_added_at_inference),
        timings={k: round(v, 6) for k, v in analysis.timings.items()},
        maps={
            spec.name: MapSummary(
                range=analysis.ranges[spec.name],
                mean=float(analysis.maps[spec.name].mean(dtype=np.float64)),
                description=spec.meaning if spec.name not in analysis.unavailable else _unavailable(spec),
                mean_error=analysis.mean_errors.get(spec.name),
            )
            for spec in MAPS
        },
        class_shares={c.name: float((analysis.prediction == i).mean()) for i, c in enumerate(card.classes)},
        regions=analysis.regions,
        input_width=(analysis.input_size or analysis.analysed_size)[1],
        input_height=(analysis.input_size or analysis.analysed_size)[0],
        analysed_size=(analysis.width, analysis.height),
        resolution=analysis.resolution,
        image_ood=analysis.image_ood,
        error_method=analysis.error_method,
        method=analysis.method,
        tta=analysis.tta,
        passes=analysis.passes,
        unavailable=list(analysis.unavailable),
        image_check=analysis.image_check if analysis.image_check is not None else not_checked("no image-level check was run", card.domain),
        estimator=analysis.estimator,
        enumerated_channels=analysis.enumerated_channels,
        effort=analysis.effort,
    )
