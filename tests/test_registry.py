"""The map registry: the one description of each map, read by the engine, the evaluator, the outputs and the page."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from app.maps.moments import UncertaintyMaps, finalize
from app.maps.registry import DETECTION_MAPS, MAP_NAMES, MAPS, PANEL_MAPS, get_map, map_ranges


@pytest.mark.parametrize("classes", [2, 5, 19])
def test_ranges_are_the_analytic_bounds(classes: int) -> None:
    """[1/C, 1] for confidence, [0, log C] for the entropies and MI, [0, 1/4] for the variance of a probability."""
    r = map_ranges(classes)
    assert r["confidence"] == pytest.approx((1 / classes, 1.0))
    for name in ("entropy", "expected_entropy", "mutual_information"):
        assert r[name] == pytest.approx((0.0, math.log(classes)))
    assert r["variance"] == (0.0, 0.25)


def test_a_single_class_has_no_range() -> None:
    with pytest.raises(ValueError, match="at least 2 classes"):
        get_map("entropy").range(1)


def test_unknown_map_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="mutual_information"):
        get_map("softmax")


def test_uncertainty_scores_point_the_same_way() -> None:
    """Low confidence and high entropy both mean "less trustworthy": their scores grow together."""
    values = np.array([0.4, 0.9])
    score, lo, hi = get_map("confidence").uncertainty_score(values, 3)
    assert score == pytest.approx([0.6, 0.1]) and (lo, hi) == pytest.approx((0.0, 2 / 3))
    score, lo, hi = get_map("entropy").uncertainty_score(values, 3)
    assert score == pytest.approx(values) and (lo, hi) == pytest.approx((0.0, math.log(3)))


def test_panels_and_detection_maps_in_page_order() -> None:
    assert PANEL_MAPS == ("confidence", "entropy", "variance", "mutual_information", "feature_distance")
    assert PANEL_MAPS == DETECTION_MAPS
    assert set(MAP_NAMES) == {"confidence", "entropy", "expected_entropy", "mutual_information", "variance", "feature_distance"}
    assert len({m.title for m in MAPS}) == len(MAPS)


def test_every_registered_map_is_an_engine_output() -> None:
    """The engine's result has one tensor per registered map, in registry order."""
    fields = {f.name for f in dataclasses.fields(UncertaintyMaps)}
    assert set(MAP_NAMES) <= fields
    probs = torch.softmax(torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(0)), 1)
    assert tuple(finalize(probs, None).scalar_maps()) == MAP_NAMES
