"""Encode an :class:`~app.analysis.Analysis` as PNGs, NPZ and JSON-ready dicts."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from app.analysis import MAP_NAMES, Analysis
from app.bundle import ModelCard
from app.render import MAP_COLOURMAPS, png_bytes, render_labels, render_scalar

MAP_DESCRIPTIONS = {
    "prediction": "argmax of the MC-mean class probabilities, in class colours",
    "confidence": "max softmax probability of the deterministic pass; over-confident and blind to novelty",
    "entropy": "predictive entropy H[mean_t p_t]: total uncertainty, aleatoric + epistemic",
    "expected_entropy": "mean_t H[p_t]: the aleatoric (data) part of the entropy",
    "mutual_information": "H[mean p] - mean_t H[p_t]: epistemic uncertainty, disagreement between dropout samples",
    "variance": "MC-dropout variance of the predicted class's probability, mean_t (p_t - mean p)^2",
}


def map_images(analysis: Analysis, card: ModelCard) -> dict[str, np.ndarray]:
    """Colour ``(H, W, 3)`` uint8 renderings: the prediction and every map on its fixed scale."""
    images = {"prediction": render_labels(analysis.prediction, [c.colour for c in card.classes])}
    for name in MAP_NAMES:
        lo, hi = analysis.ranges[name]
        images[name] = render_scalar(analysis.maps[name], lo, hi, MAP_COLOURMAPS[name])
    return images


def map_pngs(analysis: Analysis, card: ModelCard) -> dict[str, bytes]:
    """PNG bytes of :func:`map_images`."""
    return {name: png_bytes(img) for name, img in map_images(analysis, card).items()}


def npz_bytes(analysis: Analysis) -> bytes:
    """An ``.npz`` with float32 maps, the int label map and the per-class probabilities.

    Keys: every map name, ``prediction`` (uint8 if fewer than 256 classes, else
    int32), ``mean_probs`` / ``probs`` / ``class_variance`` as ``(C, H, W)``.
    """
    buf = io.BytesIO()
    label_dtype = np.uint8 if analysis.mean_probs.shape[0] <= 256 else np.int32
    arrays: dict[str, Any] = {name: analysis.maps[name].astype(np.float32) for name in MAP_NAMES}
    arrays.update(
        prediction=analysis.prediction.astype(label_dtype),
        mean_probs=analysis.mean_probs.astype(np.float32),
        probs=analysis.probs.astype(np.float32),
        class_variance=analysis.class_variance.astype(np.float32),
    )
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def summary(analysis: Analysis, card: ModelCard) -> dict[str, Any]:
    """JSON-ready facts of an analysis: model, geometry, settings, timings, per-map stats, regions."""
    return {
        "model": card.name,
        "classes": [{"index": i, "name": c.name, "colour": c.colour} for i, c in enumerate(card.classes)],
        "width": analysis.width,
        "height": analysis.height,
        "samples": analysis.samples,
        "seed": analysis.seed,
        "device": analysis.device,
        "calibrated": analysis.calibrated,
        "temperature": analysis.temperature,
        "dropout_added_at_inference": analysis.dropout_added_at_inference,
        "timings": {k: round(v, 6) for k, v in analysis.timings.items()},
        "maps": {
            name: {
                "range": list(analysis.ranges[name]),
                "mean": float(analysis.maps[name].mean(dtype=np.float64)),
                "description": MAP_DESCRIPTIONS[name],
            }
            for name in MAP_NAMES
        },
        "class_shares": {c.name: float((analysis.prediction == i).mean()) for i, c in enumerate(card.classes)},
        "regions": analysis.regions,
    }
