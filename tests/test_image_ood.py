"""Image-level OOD verdicts on a toy reference: percentiles by hand, direction per map, the threshold."""

from __future__ import annotations

import pytest

from app.metrics.image_ood import image_verdicts, uncertainty_percentile

REFERENCE = [0.1, 0.2, 0.2, 0.3, 0.4]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.05, 0.0), (0.1, 10.0), (0.2, 40.0), (0.25, 60.0), (0.4, 90.0), (0.9, 100.0)],
)
def test_percentile_counts_less_uncertain_references_and_half_the_ties(value: float, expected: float) -> None:
    assert uncertainty_percentile(value, REFERENCE, "high") == pytest.approx(expected)


def test_low_values_are_uncertain_for_confidence() -> None:
    """For confidence a *low* image mean is the uncertain end: 0.05 is below every reference image."""
    assert uncertainty_percentile(0.05, REFERENCE, "low") == pytest.approx(100.0)
    assert uncertainty_percentile(0.9, REFERENCE, "low") == pytest.approx(0.0)


def test_verdicts_flag_from_the_threshold_and_skip_maps_without_reference() -> None:
    reference = {"mutual_information": [0.01 * k for k in range(100)], "confidence": [0.5 + 0.004 * k for k in range(100)]}
    means = {"mutual_information": 2.0, "confidence": 0.9, "entropy": 0.3}
    verdicts = {v.map: v for v in image_verdicts(means, reference)}
    assert set(verdicts) == {"confidence", "mutual_information"}
    assert verdicts["mutual_information"].unusual and verdicts["mutual_information"].percentile == 100.0
    assert "99th percentile" in verdicts["mutual_information"].message
    # A map that does not flag the image is no evidence that it is familiar: the wording never says so.
    assert "within" not in verdicts["confidence"].message and "trained on" not in verdicts["confidence"].message
    assert not verdicts["confidence"].unusual and verdicts["confidence"].percentile == pytest.approx(0.0)
    assert not image_verdicts({"mutual_information": 0.975}, reference, threshold=99.0)[0].unusual
    assert image_verdicts({"mutual_information": 0.985}, reference, threshold=99.0)[0].unusual


def test_empty_reference_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        uncertainty_percentile(0.1, [], "high")
