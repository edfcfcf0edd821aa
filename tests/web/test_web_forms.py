"""The analysis form model: what it turns into, the server's samples limit, checked where settings are known, and the
``model`` field's OpenAPI schema, an ``enum`` of the served models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from webutil import LiveServer, assert_error, random_png, web_settings

from app.request import AnalysisRequest
from app.web.errors import ApiError
from app.web.factory import create_app
from app.web.forms import AnalyzeForm, EvaluateForm


def test_omitted_samples_take_the_models_default_and_the_rest_is_carried_over() -> None:
    form = AnalyzeForm(seed=7, calibrated=True, resolution="full", tta="flips")
    assert form.analysis_request(default_samples=6, max_samples=16, min_area=9, default_tta="none") == AnalysisRequest(
        samples=6, seed=7, calibrated=True, resolution="full", tta="flips", min_area=9
    )
    assert AnalyzeForm(samples=0).analysis_request(6, 16, 9, default_tta="none").samples == 0


def test_omitted_tta_takes_the_models_default_and_a_given_one_wins() -> None:
    assert AnalyzeForm().tta is None
    assert AnalyzeForm().analysis_request(6, 16, 9, default_tta="flips").tta == "flips"
    assert AnalyzeForm().analysis_request(6, 16, 9, default_tta="none").tta == "none"
    assert AnalyzeForm(tta="none").analysis_request(6, 16, 9, default_tta="flips").tta == "none", "a request's own tta wins"
    assert EvaluateForm(tta="flips+scales").analysis_request(6, 16, 9, default_tta="flips").tta == "flips+scales"


def test_samples_over_the_servers_limit_are_a_422_naming_the_field() -> None:
    assert AnalyzeForm(samples=16).analysis_request(6, 16, 9, default_tta="none").samples == 16
    with pytest.raises(ApiError) as caught:
        AnalyzeForm(samples=17).analysis_request(6, 16, 9, default_tta="none")
    assert (caught.value.status, caught.value.field) == (422, "samples") and "16" in caught.value.message


def test_format_is_read_by_its_form_name() -> None:
    assert AnalyzeForm.model_validate({"format": "npz"}).output_format == "npz"
    assert EvaluateForm.model_validate({"ood_label": 4}).ood_label == 4


# ---- The `model` field's OpenAPI schema lists the served models ----

MODEL_SCHEMAS = ("AnalyzeForm", "EvaluateForm")


def model_field(schema: dict[str, Any], form: str) -> dict[str, Any]:
    return dict(schema["components"]["schemas"][form]["properties"]["model"])


def test_the_model_fields_schema_lists_the_served_models_and_an_unknown_name_is_still_a_422(two_model_server: LiveServer) -> None:
    url = two_model_server.url
    served = [m["name"] for m in httpx.get(f"{url}/api/v1/models", timeout=30).json()["models"]]
    schema = httpx.get(f"{url}/openapi.json", timeout=30).json()
    assert served == ["tiny", "second"]
    for form in MODEL_SCHEMAS:
        assert model_field(schema, form)["anyOf"] == [{"type": "string", "enum": served}, {"type": "null"}]
    files = {"file": ("a.png", random_png(24, 32))}
    assert_error(httpx.post(f"{url}/api/v1/analyze", files=files, data={"model": "third"}, timeout=30), 422, "unknown_model", "model")
    assert httpx.post(f"{url}/api/v1/analyze", files=files, data={"model": "second", "samples": "1"}, timeout=30).status_code == 200


def test_before_the_models_load_the_names_come_from_the_cards(tiny_bundle_dir: Path, second_bundle_dir: Path) -> None:
    app = create_app(web_settings(tiny_bundle_dir, models=[str(second_bundle_dir), str(tiny_bundle_dir)]))
    assert app.state.services is None
    assert model_field(app.openapi(), "AnalyzeForm")["anyOf"][0]["enum"] == ["second", "tiny"]


def test_an_unreadable_card_leaves_the_field_a_free_string(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    app = create_app(web_settings(tiny_bundle_dir, models=[str(tiny_bundle_dir), str(tmp_path / "nothing-here")]))
    assert model_field(app.openapi(), "EvaluateForm")["anyOf"] == [{"type": "string"}, {"type": "null"}]
