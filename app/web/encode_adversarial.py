"""Encode an analysis's :class:`~app.engine.analysis.AdversarialMaps` as the answer's ``adversarial`` block (PNG data URLs)."""

from __future__ import annotations

import base64

import numpy as np

from app.engine.analysis import AdversarialMaps
from app.io.rendering import png_bytes
from app.web.png import grey_png
from app.web.schemas.adversarial import AdversarialLevelOut, AdversarialOut

__all__ = ["NEVER_INDEX", "adversarial_out", "flip_indices"]

NEVER_INDEX = 255
DESCRIPTION = (
    "An untargeted L∞ attack on the deterministic prediction (dropout off): per radius ε, from a seeded random start (the first) or "
    "the previous radius's image, one FGSM step then {steps} PGD steps maximising the cross-entropy against the clean prediction, "
    "in pixel space [0, 255]. flip_epsilon: the smallest radius at which some step changed a pixel's class."
)


def _data_url(png: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}"


def flip_indices(flip_epsilon: np.ndarray, epsilons: tuple[float, ...]) -> np.ndarray:
    """``(H, W)`` flip-ε values → uint8 index of the radius in ``epsilons`` (:data:`NEVER_INDEX` for ``inf``)."""
    out = np.full(flip_epsilon.shape, NEVER_INDEX, dtype=np.uint8)
    for k, epsilon in enumerate(epsilons):
        out[flip_epsilon == np.float32(epsilon)] = k
    return out


def _labels(labels: np.ndarray, num_classes: int) -> str | None:
    return _data_url(grey_png(labels.astype(np.uint8))) if num_classes <= 256 else None


def adversarial_out(adversarial: AdversarialMaps, num_classes: int) -> AdversarialOut:
    """The ``adversarial`` block of the answer."""
    levels = [
        AdversarialLevelOut(
            epsilon=epsilon,
            epsilon_text=f"{epsilon:g}/255",
            flip_share=adversarial.flip_share[k],
            flippable_share=adversarial.flippable_share[k],
            rounded_flip_share=adversarial.rounded_flip_share[k],
            image=_data_url(png_bytes(adversarial.perturbed[k])),
            labels_png=_labels(adversarial.predictions[k], num_classes),
        )
        for k, epsilon in enumerate(adversarial.epsilons)
    ]
    return AdversarialOut(
        description=DESCRIPTION.format(steps=adversarial.steps),
        epsilons=list(adversarial.epsilons),
        steps=adversarial.steps,
        seed=adversarial.seed,
        passes=adversarial.passes,
        seconds=adversarial.seconds,
        flip_epsilon_png=_data_url(grey_png(flip_indices(adversarial.flip_epsilon, adversarial.epsilons))),
        clean_labels_png=_labels(adversarial.clean, num_classes),
        never_flipped_share=float(np.isinf(adversarial.flip_epsilon).mean()),
        levels=levels,
    )
