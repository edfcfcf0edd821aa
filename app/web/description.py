"""The OpenAPI description (the text at the top of ``/docs``), generated from the map registry so that it lists every map."""

from __future__ import annotations

from collections.abc import Sequence

from app.maps.registry import MAPS, PREDICTION_DESCRIPTION, MapSpec
from app.web.api_paths import ANALYSES_PATH, API_PREFIX

__all__ = ["api_description", "map_line"]


def map_line(spec: MapSpec) -> str:
    """One Markdown list item: the map's name, title, fixed range and unit, which end means less trustworthy, its meaning
    and what a model needs for it."""
    direction = "high" if spec.uncertain_when == "high" else "low"
    line = f"- `{spec.name}` ({spec.title}; {spec.range_text()}, {spec.unit}; {direction} = less trustworthy): {spec.meaning}."
    if spec.needs:
        line += f" Needs a {spec.needs} ({spec.needs_command}); without one it is all zeros and the answer's `unavailable` names it."
    return line


def api_description(maps: Sequence[MapSpec] = MAPS) -> str:
    """The app's description: what it answers, every map of ``maps`` (:func:`map_line`), evaluate, stored analyses, errors."""
    lines = [
        "Per-pixel uncertainty maps for semantic segmentation, a region table (per class and connected component: area "
        "and the mean of every map) and an image-level verdict.",
        "",
        f"Every answer's `prediction` is the {PREDICTION_DESCRIPTION}; its `maps` are, each on a fixed range (C is the "
        "model's number of classes, log is natural) so that two images compare by eye:",
        "",
        *(map_line(spec) for spec in maps),
        "",
        f"`POST {API_PREFIX}/evaluate` does the same analysis and scores it against a ground-truth mask (mIoU, calibration, "
        f"error and OOD detection per map). Each answer carries an `analysis_id`: `GET {ANALYSES_PATH}/{{id}}/...` serves that "
        "analysis's PNGs, NPZ and exact pixel values without running it again, until it expires.",
        'Every error response is `{"error": {"code": ..., "message": ...}}`.',
    ]
    return "\n".join(lines)
