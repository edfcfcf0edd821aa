"""The one request value: its defaults are the project's defaults, and every out-of-range option is refused on construction."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from app import defaults
from app.request import AnalysisRequest


def test_defaults_are_the_projects() -> None:
    request = AnalysisRequest()
    assert (request.samples, request.seed, request.calibrated) == (defaults.DEFAULT_SAMPLES, defaults.DEFAULT_SEED, False)
    assert (request.resolution, request.tta, request.min_area, request.chunk_size) == ("working", "none", defaults.MIN_AREA, None)


def test_the_literal_types_are_defined_once_and_their_tuples_follow() -> None:
    assert typing.get_args(defaults.TtaMode) == defaults.TTA_MODES == ("none", "flips", "flips+scales", "photometric")
    assert typing.get_args(defaults.Resolution) == defaults.RESOLUTIONS == ("working", "full")
    hints = typing.get_type_hints(AnalysisRequest)
    assert hints["tta"] is defaults.TtaMode and hints["resolution"] is defaults.Resolution


def test_it_is_frozen() -> None:
    request = AnalysisRequest()
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.samples = 3  # type: ignore[misc]
    assert request.with_samples(3) == AnalysisRequest(samples=3) and request.samples == defaults.DEFAULT_SAMPLES


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"samples": -1}, "samples must be >= 0"),
        ({"seed": -1}, "seed must be in"),
        ({"seed": defaults.MAX_SEED + 1}, "seed must be in"),
        ({"resolution": "half"}, "resolution must be one of"),
        ({"tta": "rotate"}, "tta must be one of"),
        ({"min_area": 0}, "min_area must be >= 1"),
        ({"chunk_size": 0}, "chunk_size must be >= 1"),
    ],
)
def test_out_of_range_options_are_refused_naming_the_option(options: dict[str, typing.Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AnalysisRequest(**options)


def test_the_extremes_are_accepted() -> None:
    assert AnalysisRequest(samples=0, seed=0, min_area=1, chunk_size=1).chunk_size == 1
    assert AnalysisRequest(seed=defaults.MAX_SEED, resolution="full", tta="flips+scales").seed == defaults.MAX_SEED
