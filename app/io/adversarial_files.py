"""The adversarial-sensitivity outputs (:class:`~app.engine.analysis.AdversarialMaps`) as PNGs and ``maps.npz`` arrays.

The flip-ε map is drawn on a **fixed** scale, the same for every image: ``log2`` of ε from :data:`FLIP_SCALE` (0.25 to
64 pixel levels, i.e. 0.25/255 to 64/255) on the reversed ``inferno`` colour map, so the most fragile pixels (small ε) are
bright and the robust ones dark; pixels no radius flipped are :data:`NEVER_COLOUR` (grey).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from app.io.rendering import png_bytes, render_labels, render_positions

if TYPE_CHECKING:
    from app.engine.analysis import AdversarialMaps

__all__ = ["FLIP_SCALE", "NEVER_COLOUR", "adversarial_arrays", "adversarial_pngs", "epsilon_name", "flip_epsilon_positions", "render_flip_epsilon"]

FLIP_SCALE = (0.25, 64.0)
NEVER_COLOUR = (158, 158, 158)
FLIP_COLOURMAP = "inferno"


def epsilon_name(epsilon: float) -> str:
    """A radius in file and array names: ``2`` → ``"eps2"``, ``0.5`` → ``"eps0.5"``."""
    return f"eps{epsilon:g}"


def flip_epsilon_positions(values: np.ndarray) -> np.ndarray:
    """``(H, W)`` flip-ε values (pixel levels, ``inf`` for never) → positions in ``[0, 1]`` on the fixed scale (0: most
    fragile, 1: :data:`FLIP_SCALE`'s top or never)."""
    low, high = FLIP_SCALE
    finite = np.where(np.isfinite(values), values, high)
    return np.asarray(np.clip((np.log2(np.clip(finite, low, high)) - math.log2(low)) / (math.log2(high) - math.log2(low)), 0.0, 1.0))


def render_flip_epsilon(values: np.ndarray) -> np.ndarray:
    """``(H, W)`` flip-ε map → ``(H, W, 3)`` uint8 on its fixed scale; never-flipped pixels in :data:`NEVER_COLOUR`."""
    rgb = np.array(render_positions(1.0 - flip_epsilon_positions(values), FLIP_COLOURMAP))
    rgb[~np.isfinite(values)] = NEVER_COLOUR
    return rgb


def adversarial_pngs(adversarial: AdversarialMaps, colours: list[str]) -> dict[str, bytes]:
    """File name → PNG: ``flip_epsilon.png`` and, per radius, the 8-bit perturbed image ``adversarial_epsN.png`` and its
    prediction in class colours ``adversarial_epsN_prediction.png``."""
    files = {"flip_epsilon.png": png_bytes(render_flip_epsilon(adversarial.flip_epsilon))}
    for k, epsilon in enumerate(adversarial.epsilons):
        name = f"adversarial_{epsilon_name(epsilon)}"
        files[f"{name}.png"] = png_bytes(adversarial.perturbed[k])
        files[f"{name}_prediction.png"] = png_bytes(render_labels(adversarial.predictions[k], colours))
    return files


def adversarial_arrays(adversarial: AdversarialMaps, labels: np.dtype[np.integer]) -> dict[str, np.ndarray]:
    """``maps.npz``'s adversarial arrays: ``flip_epsilon`` ``(H, W)`` float32 (``inf``: never), ``adversarial_epsilons``
    ``(E,)`` float32, ``adversarial_images`` ``(E, H, W, 3)`` uint8, ``adversarial_predictions`` ``(E, H, W)`` and
    ``deterministic_prediction`` ``(H, W)`` (the clean prediction the flips are counted against) in ``labels``
    (:func:`app.io.npz.label_dtype`)."""
    return {
        "flip_epsilon": np.asarray(adversarial.flip_epsilon, dtype=np.float32),
        "adversarial_epsilons": np.asarray(adversarial.epsilons, dtype=np.float32),
        "adversarial_images": np.asarray(adversarial.perturbed, dtype=np.uint8),
        "adversarial_predictions": np.asarray(adversarial.predictions, dtype=labels),
        "deterministic_prediction": np.asarray(adversarial.clean, dtype=labels),
    }
