"""The image-level conformal test: the p-value by its definition, its false-alarm guarantee by simulation, the combined
score, and the verdict's wording in every case (unusual, not flagged, not checked: augmentation, ensemble, no reference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

from app.defaults import TtaMode
from app.io.bundle import load_bundle
from app.io.synthetic import make_scene
from app.metrics.conformal import TYPICALITY, Component, check_image, combined_score, conformal_p_value, fit_components, not_checked
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

CALIBRATION = [0.1, 0.2, 0.2, 0.5]


@pytest.mark.parametrize(("score", "at_least"), [(0.0, 4), (0.1, 4), (0.15, 3), (0.2, 3), (0.3, 1), (0.5, 1), (0.6, 0)])
def test_p_value_counts_calibration_scores_at_least_as_high(score: float, at_least: int) -> None:
    assert conformal_p_value(score, CALIBRATION) == pytest.approx((1 + at_least) / 5)


def test_empty_calibration_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        conformal_p_value(0.0, [])


@pytest.mark.parametrize(("n", "alpha"), [(99, 0.01), (199, 0.05), (19, 0.1)])
def test_false_alarm_rate_of_exchangeable_scores_is_alpha(n: int, alpha: float) -> None:
    """Calibration and test scores drawn from one distribution: P(p <= alpha) = floor(alpha (n + 1)) / (n + 1) <= alpha,
    over fresh calibration sets (here (n + 1) alpha is an integer, so the rate is alpha itself)."""
    rng = np.random.default_rng(0)
    trials = 20_000
    alarms = 0
    for _ in range(trials):
        calibration = sorted(rng.uniform(size=n).tolist())
        alarms += conformal_p_value(float(rng.uniform()), calibration) <= alpha
    rate = alarms / trials
    assert abs(rate - alpha) <= 4 * np.sqrt(alpha * (1 - alpha) / trials), rate


def test_combined_score_is_the_largest_standardised_component() -> None:
    fit = [{"a": float(v), "b": 10.0 * v} for v in range(11)]
    components = {c.name: c for c in fit_components(fit)}
    assert components["a"].centre == 5.0 and components["a"].scale == pytest.approx(4.0 / 1.2815515655446004)
    score, z = combined_score({"a": 5.0, "b": 100.0}, list(components.values()))
    assert z["a"] == 0.0 and score == z["b"] == pytest.approx(5.0 * 1.2815515655446004 / 4.0)


def test_wording_unusual_and_not_flagged() -> None:
    components = [Component("entropy", 0.0, 1.0), Component(TYPICALITY, 0.0, 1.0)]
    calibration = sorted(float(v) for v in range(99))
    domain = "Synthetic scenes only."
    high = check_image({"entropy": 0.5, TYPICALITY: 500.0}, components, calibration, 0.01, "99 test scenes", domain)
    assert high.status == "unusual" and high.p_value == pytest.approx(0.01) and high.alpha == 0.01
    assert "Unusual image" in high.message and "feature-space typicality" in high.message and domain in high.message
    low = check_image({"entropy": 50.0, TYPICALITY: 3.0}, components, calibration, 0.01, "99 test scenes", domain)
    assert low.status == "not_flagged" and low.p_value == pytest.approx(50 / 100)
    assert "does not show that it is like the training data" in low.message and domain in low.message
    for check in (high, low):
        assert "within" not in check.message and "in distribution" not in check.message
    nothing = not_checked("no reference", "")
    assert nothing.status == "not_checked" and nothing.p_value is None and "does not say what it was trained on" in nothing.message


@pytest.fixture(scope="module")
def default() -> Analyzer:
    return Analyzer(load_bundle("default"))


def test_a_photo_with_the_synthetic_model_is_never_reassured(default: Analyzer) -> None:
    """The oranges case: skimage's coffee photo with the synthetic model is flagged, and its wording names the domain."""
    check = default.analyze_image(data.coffee(), AnalysisRequest(samples=20)).image_check
    assert check is not None and check.status == "unusual", check
    assert check.p_value is not None and check.alpha is not None and check.p_value <= check.alpha
    assert default.bundle.card.domain in check.message and "within" not in check.message


def test_a_test_scene_is_checked_with_a_p_value(default: Analyzer) -> None:
    check = default.analyze_image(make_scene("test", 11).image, AnalysisRequest(samples=20)).image_check
    assert check is not None and check.status == "not_flagged" and check.p_value is not None and check.p_value > 0.01
    assert check.reference is not None and "split=val seed=1" in check.reference


@pytest.mark.parametrize("tta", ["flips", "flips+scales", "photometric"])
def test_augmented_analyses_are_not_checked_and_say_why(default: Analyzer, tta: TtaMode) -> None:
    rgb = make_scene("test", 3).image
    check = default.analyze_image(rgb, AnalysisRequest(samples=2, tta=tta)).image_check
    assert check is not None and check.status == "not_checked" and check.p_value is None
    assert f"test-time augmentation ({tta})" in check.message and default.bundle.card.domain in check.message


def test_a_model_without_reference_is_not_checked(tiny_bundle_dir: Path) -> None:
    analyzer = Analyzer(load_bundle(tiny_bundle_dir))
    check = analyzer.analyze_image(make_scene("test", 0, size=32).image, AnalysisRequest(samples=2)).image_check
    assert check is not None and check.status == "not_checked" and "no image-level reference" in check.message


def test_an_ensemble_is_not_checked() -> None:
    analyzer = Analyzer(load_bundle("ensemble"))
    check = analyzer.analyze_image(make_scene("test", 0, size=64).image, AnalysisRequest(samples=0)).image_check
    assert check is not None and check.status == "not_checked" and "ensemble" in check.message
