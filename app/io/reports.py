"""Evaluation reports: the reliability diagram PNG and a Markdown table."""

from __future__ import annotations

import io
from collections.abc import Mapping

from PIL import Image, ImageDraw

from app.defaults import ECE_BINS
from app.metrics.calibration import CalibrationResult
from app.metrics.scoring import EvaluationResult
from app.plural import plural

__all__ = ["CURVE_COLOURS", "markdown_report", "reliability_png"]

CURVE_COLOURS = {"softmax": (220, 60, 60), "mc_mean": (40, 110, 220), "softmax_scaled": (40, 160, 80)}
FALLBACK_COLOUR = (90, 90, 90)


def reliability_png(curves: Mapping[str, CalibrationResult], size: int = 420) -> bytes:
    """A reliability diagram: accuracy (bars/markers) against confidence per bin, with counts.

    Args:
        curves: Name (``softmax``, ``softmax_scaled``, ``mc_mean``) → its calibration.
        size: Side of the plot area in pixels.
    """
    margin, legend = 48, 18 * (len(curves) + 1)
    img = Image.new("RGB", (size + 2 * margin, size + 2 * margin + legend + 60), "white")
    draw = ImageDraw.Draw(img)
    x0, y0 = margin, margin
    draw.rectangle([x0, y0, x0 + size, y0 + size], outline=(0, 0, 0))
    draw.line([x0, y0 + size, x0 + size, y0], fill=(150, 150, 150), width=1)
    for k in range(6):
        v = k / 5
        draw.text((x0 + v * size - 8, y0 + size + 4), f"{v:.1f}", fill=(0, 0, 0))
        draw.text((x0 - 30, y0 + size - v * size - 6), f"{v:.1f}", fill=(0, 0, 0))
    draw.text((x0 + size / 2 - 40, y0 + size + 18), "confidence", fill=(0, 0, 0))
    draw.text((4, y0 - 20), "accuracy", fill=(0, 0, 0))
    n = len(curves)
    for i, (name, res) in enumerate(curves.items()):
        rel = res.reliability
        colour = CURVE_COLOURS.get(name, FALLBACK_COLOUR)
        for lower, upper, acc in zip(rel.lower, rel.upper, rel.accuracy, strict=True):
            if acc is None:
                continue
            width = (upper - lower) * size / n
            left = x0 + lower * size + i * width
            draw.rectangle([left, y0 + size - acc * size, left + width - 1, y0 + size], fill=colour)
        points = [(x0 + c * size, y0 + size - a * size) for c, a in zip(rel.confidence, rel.accuracy, strict=True) if a is not None and c is not None]
        for px, py in points:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], outline=(0, 0, 0), fill=colour)
        ly = y0 + size + 40 + 18 * i
        draw.rectangle([x0, ly, x0 + 12, ly + 12], fill=colour)
        draw.text((x0 + 18, ly), f"{name}: ECE {res.ece:.4f}, MCE {res.mce:.3f}, NLL {res.nll:.4f}", fill=(0, 0, 0))
    counts = next(iter(curves.values())).reliability.count if curves else []
    ly = y0 + size + 40 + 18 * n
    draw.text((x0, ly), "pixels per bin: " + " ".join(str(c) for c in counts), fill=(0, 0, 0))
    draw.text((x0, 8), f"Reliability (top-label, {ECE_BINS} equal-width bins); diagonal = perfect calibration", fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _fmt(value: object) -> str:
    return "–" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown_report(metrics: EvaluationResult) -> str:
    """A Markdown summary of an evaluation."""
    seg = metrics.segmentation
    lines = [
        f"# Evaluation ({plural(metrics.images, 'image')}, {plural(seg.pixels, 'labelled pixel')})",
        "",
        f"mIoU **{seg.miou:.4f}**, pixel accuracy **{seg.pixel_accuracy:.4f}**",
        "",
        "| class | IoU |",
        "|---|---|",
        *[f"| {name} | {_fmt(v)} |" for name, v in seg.iou_per_class.items()],
        "",
        f"## Calibration (top-label, {ECE_BINS} equal-width bins)",
        "",
        "| probabilities | ECE | MCE | NLL | Brier | accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for name, res in metrics.calibration.items():
        lines.append(f"| {name} | {_fmt(res.ece)} | {_fmt(res.mce)} | {_fmt(res.nll)} | {_fmt(res.brier)} | {_fmt(res.accuracy)} |")
    lines += ["", "## Which map flags errors and OOD pixels", "", "| map | error AUROC | AURC | OOD AUROC |", "|---|---|---|---|"]
    ood = metrics.ood_detection or {}
    for name, det in metrics.error_detection.items():
        ood_auroc = ood[name].auroc if name in ood else None
        lines.append(f"| {name} | {_fmt(det.auroc)} | {_fmt(det.aurc)} | {_fmt(ood_auroc)} |")
    lines += ["", f"_{metrics.notes}_", ""]
    return "\n".join(lines)
