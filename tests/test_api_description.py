"""The OpenAPI description at the top of ``/docs`` lists every map of the registry (issue 25, item 5)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from app.maps.registry import MAPS
from app.web.description import api_description
from app.web.factory import create_app
from app.web.settings import Settings


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The app's OpenAPI document with the default settings (no server, no model: those load in the lifespan)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("SEGU_")}
    for name in saved:
        del os.environ[name]
    try:
        return create_app(Settings()).openapi()
    finally:
        os.environ.update(saved)


@pytest.mark.parametrize("spec", MAPS, ids=lambda s: s.name)
def test_every_map_is_in_the_openapi_description(schema: dict[str, Any], spec: Any) -> None:
    """Its name, title, fixed range, unit and meaning: one line per map, feature distance with what it needs."""
    description = schema["info"]["description"]
    line = next((line for line in description.splitlines() if line.startswith(f"- `{spec.name}` ")), None)
    assert line is not None, f"{spec.name} is not in the OpenAPI description"
    for part in (spec.title, spec.range_text(), spec.unit, spec.meaning):
        assert part in line, (spec.name, part)
    if spec.needs:
        assert spec.needs in line and str(spec.needs_command) in line


def test_the_description_has_one_line_per_map_and_loses_a_dropped_one(schema: dict[str, Any]) -> None:
    """Generated from the registry: a registry without feature distance gives a description without it."""
    description = schema["info"]["description"]
    assert description == api_description()
    assert [line.split("`")[1] for line in description.splitlines() if line.startswith("- `")] == [m.name for m in MAPS]
    fewer = api_description([m for m in MAPS if m.name != "feature_distance"])
    assert "`feature_distance`" not in fewer and "`mutual_information`" in fewer


def test_ranges_and_scales_in_words() -> None:
    by_name = {m.name: m for m in MAPS}
    assert by_name["confidence"].range_text() == "[1/C, 1]" and by_name["confidence"].scale_text() == "linear"
    assert by_name["entropy"].range_text() == "[0, log C]" and by_name["entropy"].scale_text() == "square root"
    assert by_name["variance"].range_text() == "[0, 0.25]" and by_name["variance"].scale_text() == "cube root"
    assert by_name["feature_distance"].scale_text() == "power 4"


def test_the_schema_fields_that_list_maps_list_every_one(schema: dict[str, Any]) -> None:
    """A map's name in the answer, the PNG route's name and the evaluation's per-map scores name every (detection) map."""
    components = schema["components"]["schemas"]
    name = components["MapOut"]["properties"]["name"]["description"]
    scores = components["EvaluationMetrics"]["properties"]["error_detection"]["description"]
    route = schema["paths"]["/api/v1/analyses/{analysis_id}/maps/{name}.png"]["get"]
    path_name = next(p for p in route["parameters"] if p["name"] == "name")["description"]
    for spec in MAPS:
        assert spec.name in name and spec.name in path_name, spec.name
        assert (spec.name in scores) == spec.detection, spec.name
