"""Prediction sets through the analysis: the card's levels become set-size maps equal to ``#{c : p_c >= t}``, the region
table's share of one-class pixels, ``maps.npz`` arrays and ``analysis.json``; calibration fits each level as the fit does."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from app.io.bundle import Bundle
from app.io.card import ConformalLevel, ConformalSets
from app.io.encoding import summarise
from app.io.npz import npz_bytes
from app.io.synthetic import make_scene
from app.metrics.risk_control import fit_threshold, shortfall_curve, truth_probability
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.set_calibration import SetCalibration

THRESHOLDS = {0.05: 0.2, 0.1: 0.6}


def _card_sets(samples: int = 4) -> ConformalSets:
    return ConformalSets(
        method="test",
        score="test",
        analysis_method="mc_dropout",
        samples=samples,
        calibrated_on="test images",
        images=10,
        levels=[ConformalLevel(alpha=a, threshold=t, calibration_risk=a / 2) for a, t in THRESHOLDS.items()],
    )


def test_an_analysis_carries_set_sizes_regions_npz_and_json(tiny_bundle: Bundle) -> None:
    tiny_bundle.card.conformal_sets = _card_sets()
    rgb = make_scene("test", 4, size=96).image
    analysis = Analyzer(tiny_bundle).analyze_image(rgb, AnalysisRequest(samples=4, seed=2))
    sets = analysis.sets
    assert sets is not None and sets.default_alpha == 0.1 and sets.approximate == ""
    for alpha, t in THRESHOLDS.items():
        np.testing.assert_array_equal(sets.sizes[alpha], (analysis.mean_probs >= t).sum(axis=0))
        assert sets.sizes[alpha].dtype == np.uint8
    sure = sets.sizes[0.1] == 1
    for region in analysis.regions:
        if region.kind == "class":
            assert region.sure_share == pytest.approx(sure[analysis.prediction == region.class_index].mean())
    arrays = np.load(io.BytesIO(npz_bytes(analysis)))
    np.testing.assert_array_equal(arrays["set_size_10"], sets.sizes[0.1])
    np.testing.assert_array_equal(arrays["set_size_05"], sets.sizes[0.05])
    info = json.loads(json.dumps(summarise(analysis, tiny_bundle.card).to_json()))
    level = next(item for item in info["conformal"]["levels"] if item["alpha"] == 0.1)
    assert level["singleton_share"] == pytest.approx(sure.mean())
    assert level["mean_set_size"] == pytest.approx(sets.sizes[0.1].mean())


def test_sets_of_another_setting_say_why_they_are_approximate(tiny_bundle: Bundle) -> None:
    tiny_bundle.card.conformal_sets = _card_sets(samples=20)
    analysis = Analyzer(tiny_bundle).analyze_image(make_scene("test", 5, size=64).image, AnalysisRequest(samples=4, seed=2, tta="flips"))
    assert analysis.sets is not None
    assert "4 MC samples here, 20 in the calibration" in analysis.sets.approximate
    assert "mc_dropout" in analysis.sets.approximate
    tiny_bundle.card.conformal_sets = None
    assert Analyzer(tiny_bundle).analyze_image(make_scene("test", 5, size=64).image).sets is None


def test_set_calibration_fits_each_level_on_the_images_losses() -> None:
    rng = np.random.default_rng(3)
    calibration = SetCalibration(["a", "b", "c"], ignore_index=255)
    curves, disc = [], []
    for _ in range(30):
        probs = rng.dirichlet(np.ones(3) * 0.5, size=(8, 8)).transpose(2, 0, 1)
        mask = rng.integers(0, 3, size=(8, 8))
        mask[0, :3] = 255
        calibration.add(probs, mask)
        valid = mask != 255
        curves.append(shortfall_curve(truth_probability(probs, mask, valid)))
        if (valid & (mask == 1)).any():
            disc.append(shortfall_curve(probs[1][valid & (mask == 1)]))
    calibration.add(rng.dirichlet(np.ones(3), size=(2, 2)).transpose(2, 0, 1), np.full((2, 2), 255))  # nothing scored: skipped
    fitted = calibration.fit(analysis_method="mc_dropout", samples=4, calibrated_on="random")
    assert fitted.images == 30
    for level in fitted.levels:
        assert level.threshold == fit_threshold(np.stack(curves), level.alpha)
    mask_b = next(m for m in fitted.class_masks if m.class_name == "b" and m.alpha == 0.1)
    assert mask_b.threshold == fit_threshold(np.stack(disc), 0.1) and mask_b.images == len(disc)


def test_a_tiled_analysis_without_class_arrays_makes_the_same_sets_band_by_band(tiny_bundle: Bundle) -> None:
    """Sliding windows that drop each band's probabilities keep its set sizes: equal to ``#{c : p_c >= t}`` of the same
    analysis run with its class arrays."""
    tiny_bundle.card.conformal_sets = _card_sets()
    analyzer = Analyzer(tiny_bundle)
    analyzer.memory_budget = int(analyzer.cost.image_bytes(120, 136) / 3)
    assert analyzer.tile_grid(120, 136) is not None
    rgb = make_scene("test", 6, size=136).image[:120]
    request = AnalysisRequest(samples=4, seed=2, resolution="full")
    kept = analyzer.analyze_image(rgb, request)
    dropped = analyzer.analyze_image(rgb, AnalysisRequest(samples=4, seed=2, resolution="full", class_arrays=False))
    assert dropped.class_arrays is None and dropped.sets is not None and kept.sets is not None
    for alpha, t in THRESHOLDS.items():
        np.testing.assert_array_equal(dropped.sets.sizes[alpha], (kept.mean_probs >= t).sum(axis=0))
        np.testing.assert_array_equal(dropped.sets.sizes[alpha], kept.sets.sizes[alpha])
