"""Encode an :class:`~app.engine.analysis.Analysis` as PNGs and a typed summary (the NPZ: :mod:`app.io.npz`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from app.engine.analysis import Analysis
from app.io.bundle import ModelCard
from app.io.card import dropout_note
from app.io.rendering import indexed_map_images, indexed_png_bytes, map_images, png_bytes
from app.maps.regions import Region
from app.maps.registry import MAPS, MapSpec, set_size_name
from app.metrics.conformal import ImageCheck, not_checked
from app.metrics.image_ood import ImageOodResult

__all__ = ["AnalysisSummary", "ClassSummary", "MapSummary", "map_pngs", "summarise"]


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
    """The facts of one analysis (``analysis.json``): model, geometry, settings, timings, map means and regions.

    ``npz`` is the dtype of each array of the ``maps.npz`` written beside it (name → ``"float16"``, ``"uint8"``, …;
    :func:`app.io.npz.array_dtypes`), empty where no archive was written; ``zarr`` describes the ``maps.zarr`` written
    instead (:mod:`app.io.zarr_store`: its dtypes, chunks, codec and the previews' factor), empty where none was.
    """

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
    npz: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    zarr: dict[str, Any] = field(default_factory=dict)
    conformal: dict[str, Any] | None = None
    adversarial: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``source`` and ``threads`` left out when unset, ``npz`` and ``zarr`` when empty)."""
        out = asdict(self)
        for name in ("source", "threads"):
            if out[name] is None:
                del out[name]
        for name in ("npz", "zarr"):
            if not out[name]:
                del out[name]
        for name in ("conformal", "adversarial"):
            if out[name] is None:
                del out[name]
        return out


def _unavailable(spec: MapSpec) -> str:
    missing = f"this bundle has no {spec.needs} ({spec.needs_command})" if spec.needs else "this bundle cannot compute it"
    return f"not available: {missing}; all zeros"


def class_summaries(card: ModelCard) -> list[ClassSummary]:
    """The card's classes with their indices."""
    return [ClassSummary(index=i, name=c.name, colour=c.colour) for i, c in enumerate(card.classes)]


def map_pngs(analysis: Analysis, card: ModelCard, indexed: bool = False) -> dict[str, bytes]:
    """PNG bytes of the prediction and every map on its fixed scale.

    ``indexed``: palette PNGs (:func:`~app.io.rendering.indexed_png_bytes`), the same pixels in about half the bytes (RGB
    for a model of more than 256 classes); else RGB PNGs.
    """
    colours = [c.colour for c in card.classes]
    if indexed and len(colours) <= 256:
        return {name: indexed_png_bytes(entries, palette) for name, (entries, palette) in indexed_map_images(analysis, colours).items()}
    return {name: png_bytes(img) for name, img in map_images(analysis, colours).items()}


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
                mean=analysis.map_mean(spec.name),
                description=spec.meaning if spec.name not in analysis.unavailable else _unavailable(spec),
                mean_error=analysis.mean_errors.get(spec.name),
            )
            for spec in MAPS
        },
        class_shares={c.name: analysis.class_share(i) for i, c in enumerate(card.classes)},
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
        conformal=conformal_summary(analysis),
        adversarial=analysis.adversarial.summary() if analysis.adversarial is not None else None,
    )


def conformal_summary(analysis: Analysis) -> dict[str, Any] | None:
    """``analysis.json``'s ``conformal``: each level's threshold, share of one-class sets and mean set size, the guarantee and
    the class masks' thresholds; ``None`` without sets."""
    sets = analysis.sets
    if sets is None:
        return None
    return {
        "levels": sets.summaries(),
        "default_alpha": sets.default_alpha,
        "guarantee": sets.guarantee,
        "approximate": sets.approximate,
        "class_masks": [{"class_name": name, "alpha": alpha, "threshold": threshold} for name, alpha, threshold in sets.class_masks],
        "npz": {str(alpha): set_size_name(alpha) for alpha in sets.sizes},
    }
