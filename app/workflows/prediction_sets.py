"""An analysis's conformal prediction sets from the card's calibrated levels (:mod:`app.metrics.risk_control`)."""

from __future__ import annotations

import numpy as np
import torch

from app.engine.analysis import PredictionSets
from app.engine.geometry import crop
from app.io.card import ConformalSets
from app.metrics.risk_control import set_sizes

__all__ = ["DEFAULT_ALPHA", "guarantee_text", "prediction_sets", "sizes_from_probs"]

DEFAULT_ALPHA = 0.1


def guarantee_text(card_sets: ConformalSets) -> str:
    """The guarantee of the card's sets, in words: what is bounded, over what, and what it assumes."""
    return (
        f"For an image drawn like the {card_sets.images} calibration images ({card_sets.calibrated_on}), the expected share of "
        "its pixels whose true class is outside their set is at most alpha (conformal risk control over images; any one image "
        "may do worse). It assumes the image is exchangeable with the calibration images: under a shift of domain the "
        "guarantee is void."
    )


def sizes_from_probs(card_sets: ConformalSets, mean_probs: torch.Tensor, size: tuple[int, int]) -> dict[float, np.ndarray]:
    """Each level's ``(H, W)`` uint8 set sizes of ``(1, C, H', W')`` mean probabilities, cropped to ``size``."""
    return {level.alpha: crop(set_sizes(mean_probs, level.threshold)[0], size).cpu().numpy() for level in card_sets.levels}


def prediction_sets(card_sets: ConformalSets, sizes: dict[float, np.ndarray], method: str, samples: int, temperature: float) -> PredictionSets:
    """The analysis's sets from each level's set sizes.

    ``method``, ``samples`` and ``temperature`` say how the analysis was made; when they differ from the calibration's the
    sets are kept, with the reason their guarantee is approximate.
    """
    reasons = []
    if method != card_sets.analysis_method:
        reasons.append(f"the card calibrated {card_sets.analysis_method}, this analysis is {method}")
    if samples != card_sets.samples:
        reasons.append(f"{samples} MC samples here, {card_sets.samples} in the calibration")
    if temperature != 1.0:
        reasons.append(f"the calibration used tau = 1, this analysis tau = {temperature:g}")
    alphas = [level.alpha for level in card_sets.levels]
    return PredictionSets(
        thresholds={level.alpha: level.threshold for level in card_sets.levels},
        sizes=sizes,
        default_alpha=DEFAULT_ALPHA if DEFAULT_ALPHA in alphas else alphas[0],
        guarantee=guarantee_text(card_sets),
        approximate="; ".join(reasons),
        class_masks=[(m.class_name, m.alpha, m.threshold) for m in card_sets.class_masks],
    )
