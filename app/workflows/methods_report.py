"""The methods comparison as Markdown tables and JSON (:mod:`app.workflows.compare_methods`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.maps.registry import DETECTION_MAPS
from app.workflows.compare_methods import TYPICALITY, MethodResult

__all__ = ["methods_json", "methods_markdown"]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _informative(r: MethodResult, name: str, reference: str) -> bool:
    """Whether ``name`` is a score of ``r`` that is not zero on every image (MI and variance of one deterministic pass are)."""
    scores = r.images[reference].scores(name)
    return bool(scores) and any(v != 0.0 for v in scores)


def _pixel_rows(results: Sequence[MethodResult], splits: Sequence[str], ood_split: str) -> list[str]:
    base = results[0].seconds_per_image
    columns = [f"mIoU {s}" for s in splits] + [f"ECE {s}" for s in splits]
    lines = ["| method | reported as | s per scene | × first row | " + " | ".join(columns) + " |", "|---|---|---|---|" + "---|" * len(columns)]
    for r in results:
        miou = [_fmt(r.pixels[s].segmentation.miou) for s in splits]
        ece = [_fmt(r.pixels[s].calibration["mc_mean"].ece, 4) for s in splits]
        lines.append(f"| {r.method.label} | `{r.reported}` | {r.seconds_per_image:.3f} | {r.seconds_per_image / base:.1f} | " + " | ".join(miou + ece) + " |")
    lines += ["", "| method | map | " + " | ".join(f"error AUROC {s} ↑ | AURC {s} ↓" for s in splits if s != ood_split) + " | OOD-pixel AUROC ↑ |"]
    lines.append("|---|---|" + "---|---|" * sum(s != ood_split for s in splits) + "---|")
    for r in results:
        ood = r.pixels[ood_split].ood_detection or {}
        for name in (n for n in DETECTION_MAPS if n in r.pixels[splits[0]].error_detection and _informative(r, n, splits[0])):
            cells = [f"{_fmt(r.pixels[s].error_detection[name].auroc)} | {_fmt(r.pixels[s].error_detection[name].aurc, 5)}" for s in splits if s != ood_split]
            cells.append(_fmt(ood[name].auroc if name in ood else None))
            lines.append(f"| {r.method.label} | {name} | " + " | ".join(cells) + " |")
    return lines


def methods_markdown(results: Sequence[MethodResult], splits: Sequence[str], others: Sequence[str], reference: str = "test", ood_split: str = "ood") -> str:
    """Three tables: mIoU and ECE of the mean prediction with the time per scene; pixel-level detection; image level.

    Args:
        results: One per method; the first is the time reference (``× first row``).
        splits: The labelled splits, in column order.
        others: The sets compared with ``reference`` at image level, in column order.
        reference: The in-distribution set.
        ood_split: The split scored for OOD pixels.
    """
    lines = _pixel_rows(results, splits, ood_split)
    lines += ["", f"Image level: AUROC of each score for telling {reference} images from …", ""]
    lines += ["| method | image-level score | " + " | ".join(others) + " |", "|---|---|" + "---|" * len(others)]
    for r in results:
        for name in (*DETECTION_MAPS, TYPICALITY):
            if not _informative(r, name, reference):
                continue
            label = f"{name} (mean and spread)" if name == TYPICALITY else f"{name}, image mean"
            lines.append(f"| {r.method.label} | {label} | " + " | ".join(_fmt(r.image_auroc(reference, o, name)) for o in others) + " |")
    return "\n".join(lines)


def methods_json(results: Sequence[MethodResult]) -> dict[str, Any]:
    """Per method: what ran, the time per scene and every image's scores (the numbers behind the image-level table)."""
    return {
        r.method.label: {
            "model": r.method.model,
            "tta": r.method.tta,
            "samples": r.method.samples,
            "reported": r.reported,
            "seconds_per_image": r.seconds_per_image,
            "images": {k: {"names": v.names, "means": v.means, "typicality": v.typicality} for k, v in r.images.items()},
        }
        for r in results
    }
