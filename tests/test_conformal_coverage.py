"""The default model's conformal sets on fresh synthetic scenes: the card's level holds on the test split (the issue's bar),
risk control holds over 20 random calibration/test splits of real analyses, and under shift it does not (reported).

Each scene is analysed once (the card's 20 MC samples for the bar; 4 for the splits, recalibrated on each split, which
is the method's own guarantee whatever the samples).
"""

from __future__ import annotations

import numpy as np
import pytest

from app.io.bundle import Bundle, load_bundle
from app.io.synthetic import iter_split
from app.metrics.risk_control import GRID, fit_threshold, shortfall_curve, truth_probability
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

ALPHA = 0.1


@pytest.fixture(scope="module")
def default() -> Bundle:
    return load_bundle("default")


def _curves(analyzer: Analyzer, split: str, count: int, samples: int) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Per scene: its set loss curve, and its mean probabilities and mask."""
    curves, probs, masks = [], [], []
    for scene in iter_split(split, count):
        analysis = analyzer.analyze_image(scene.image, AnalysisRequest(samples=samples, seed=0))
        curves.append(shortfall_curve(truth_probability(analysis.mean_probs, scene.mask)))
        probs.append(analysis.mean_probs)
        masks.append(scene.mask)
    return np.stack(curves), probs, masks


def test_the_cards_level_holds_on_200_fresh_test_scenes(default: Bundle) -> None:
    """The bar: the card's threshold at alpha = 0.1, fitted on the val split, misses [0.08, 0.12] of fresh test pixels."""
    sets = default.card.conformal_sets
    assert sets is not None
    level = next(level for level in sets.levels if level.alpha == ALPHA)
    curves, _, _ = _curves(Analyzer(default), "test", 200, sets.samples)
    assert 0.08 <= curves[:, round(level.threshold * GRID)].mean() <= 0.12


def test_risk_control_over_random_splits_and_its_failure_under_shift(default: Bundle) -> None:
    """20 random 150/150 splits of 300 test scenes: the mean test risk is within [alpha - 0.02, alpha + 1/151 + 0.02];
    thresholds fitted on test scenes miss far more than alpha of the shifted split's pixels (exchangeability broken)."""
    analyzer = Analyzer(default)
    curves, _, _ = _curves(analyzer, "test", 300, 4)
    shifted, _, _ = _curves(analyzer, "shifted", 60, 4)
    rng = np.random.default_rng(0)
    risks, shifted_risks = [], []
    for _ in range(20):
        order = rng.permutation(len(curves))
        calibration, test = curves[order[:150]], curves[order[150:]]
        j = round(fit_threshold(calibration, ALPHA) * GRID)
        risks.append(test[:, j].mean())
        shifted_risks.append(shifted[:, j].mean())
    assert ALPHA - 0.02 <= np.mean(risks) <= ALPHA + 1 / 151 + 0.02
    assert np.mean(shifted_risks) > 1.5 * ALPHA
