"""Encode an :class:`~app.engine.analysis.Analysis` as PNGs, NPZ and a typed summary."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from app.engine.analysis import Analysis
from app.io.bundle import ModelCard
from app.io.rendering import map_images, png_bytes
from app.maps.regions import Region
from app.maps.registry import MAPS
from app.metrics.image_ood import ImageOodResult

__all__ = ["AnalysisSummary", "ClassSummary", "MapSummary", "map_pngs", "npz_bytes", "summarise"]


@dataclass(frozen=True)
class ClassSummary:
    """One class of the model, as outputs list it."""

    index: int
    name: str
    colour: str


@dataclass(frozen=True)
class MapSummary:
    """One map of an analysis: its fixed range, image mean and meaning."""

    range: tuple[float, float]
    mean: float
    description: str


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
    timings: dict[str, float]
    maps: dict[str, MapSummary]
    class_shares: dict[str, float]
    regions: list[Region]
    input_width: int
    input_height: int
    analysed_size: tuple[int, int]
    resolution: str
    image_ood: list[ImageOodResult]
    source: str | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``source`` left out when unset)."""
        out = asdict(self)
        if self.source is None:
            del out["source"]
        return out


def class_summaries(card: ModelCard) -> list[ClassSummary]:
    """The card's classes with their indices."""
    return [ClassSummary(index=i, name=c.name, colour=c.colour) for i, c in enumerate(card.classes)]


def map_pngs(analysis: Analysis, card: ModelCard) -> dict[str, bytes]:
    """PNG bytes of the prediction and every map on its fixed scale."""
    return {name: png_bytes(img) for name, img in map_images(analysis, [c.colour for c in card.classes]).items()}


def npz_bytes(analysis: Analysis) -> bytes:
    """An ``.npz`` with float32 maps, the int label map and the per-class probabilities.

    Keys: every map name, ``prediction`` (uint8 if at most 256 classes, else
    int32), ``mean_probs`` / ``probs`` / ``class_variance`` as ``(C, H, W)``.
    """
    buf = io.BytesIO()
    label_dtype = np.uint8 if analysis.num_classes <= 256 else np.int32
    arrays: dict[str, Any] = {spec.name: analysis.maps[spec.name].astype(np.float32) for spec in MAPS}
    arrays.update(
        prediction=analysis.prediction.astype(label_dtype),
        mean_probs=analysis.mean_probs.astype(np.float32),
        probs=analysis.probs.astype(np.float32),
        class_variance=analysis.class_variance.astype(np.float32),
    )
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


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
        timings={k: round(v, 6) for k, v in analysis.timings.items()},
        maps={
            spec.name: MapSummary(range=analysis.ranges[spec.name], mean=float(analysis.maps[spec.name].mean(dtype=np.float64)), description=spec.meaning)
            for spec in MAPS
        },
        class_shares={c.name: float((analysis.prediction == i).mean()) for i, c in enumerate(card.classes)},
        regions=analysis.regions,
        input_width=(analysis.input_size or analysis.analysed_size)[1],
        input_height=(analysis.input_size or analysis.analysed_size)[0],
        analysed_size=(analysis.width, analysis.height),
        resolution=analysis.resolution,
        image_ood=analysis.image_ood,
    )
