"""The analysis form model: what it turns into, and the server's samples limit, checked where settings are known."""

from __future__ import annotations

import pytest

from app.request import AnalysisRequest
from app.web.errors import ApiError
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
