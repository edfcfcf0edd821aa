"""Test-time augmentation and ensembles through the API and the command line: the method reported, the form field,
and a work budget that counts passes."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from webutil import assert_error, labelled_scene, mask_png, random_png, wait_ready, web_settings

from app.cli import main
from app.defaults import TtaMode
from app.io.bundle import load_bundle, save_bundle
from app.web.factory import create_app
from app.web.forms import AnalysisForm


@pytest.fixture(scope="module")
def ensemble_dir(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ensemble of the tiny bundle and a copy of it with a negated head."""
    base = tmp_path_factory.mktemp("web-ensemble")
    other = load_bundle(tiny_bundle_dir)
    with torch.no_grad():
        for parameter in other.net.model.get_submodule("segmentation_head").parameters():
            parameter.neg_()
    save_bundle(other.card, other.net.model, base / "b", half=False)
    folder = base / "duo"
    folder.mkdir()
    card = {"format_version": 1, "kind": "ensemble", "name": "duo", "members": [str(tiny_bundle_dir), "../b"]}
    (folder / "model.json").write_text(json.dumps(card))
    return folder


READY = "() => document.body.dataset.state === 'ready' && document.querySelectorAll('.view canvas[data-drawn=\"1\"]').length === 6"


def _client(bundle_dir: Path, **overrides: object) -> Iterator[TestClient]:
    with TestClient(create_app(web_settings(bundle_dir, **overrides)), base_url="http://localhost") as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def single(tiny_bundle_dir: Path) -> Iterator[TestClient]:
    yield from _client(tiny_bundle_dir)


@pytest.fixture(scope="module")
def duo(ensemble_dir: Path) -> Iterator[TestClient]:
    yield from _client(ensemble_dir)


def _analyze(client: TestClient, **data: str) -> dict[str, object]:
    response = client.post("/api/v1/analyze", files={"file": ("a.png", random_png())}, data=data)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_the_answer_reports_method_passes_and_samples(single: TestClient, duo: TestClient) -> None:
    facts = ("method", "tta", "passes", "samples", "error_method")
    assert [_analyze(single, samples="3")[k] for k in facts] == ["mc_dropout", "none", 1, 3, "jackknife"]
    assert [_analyze(single, samples="0", tta="flips")[k] for k in facts] == ["tta:flips", "flips", 4, 0, "exact"]
    assert [_analyze(duo, samples="0")[k] for k in facts] == ["ensemble(2)", "none", 2, 0, "exact"]
    both = _analyze(duo, samples="2", tta="flips+scales")
    assert [both[k] for k in facts] == ["ensemble(2) + tta:flips+scales + mc_dropout", "flips+scales", 24, 2, "jackknife"]
    assert both["model"] == "duo"


def test_an_unknown_tta_is_a_422_naming_the_field(single: TestClient) -> None:
    response = single.post("/api/v1/analyze", files={"file": ("a.png", random_png())}, data={"tta": "rotations"})
    assert_error(response, 422, "validation_error", field="tta")
    assert set(get_args(AnalysisForm.model_fields["tta"].annotation)) == {TtaMode, type(None)}  # omitted: the model's default_tta


def test_evaluate_takes_tta_too(duo: TestClient) -> None:
    image, mask = labelled_scene()
    response = duo.post("/api/v1/evaluate", files={"file": ("s.png", image), "mask": ("m.png", mask_png(mask))}, data={"samples": "0", "tta": "flips"})
    assert response.status_code == 200, response.text
    assert (response.json()["method"], response.json()["passes"]) == ("ensemble(2) + tta:flips", 8)


def test_the_work_budget_counts_passes(tiny_bundle_dir: Path, ensemble_dir: Path) -> None:
    """48×64 pixels × (3 samples + 1) fits a budget of 3 such units; 4 flips (or 2 members × 4 flips) do not."""
    unit = 48 * 64 * 4
    for folder, passes in ((tiny_bundle_dir, 4), (ensemble_dir, 8)):
        for client in _client(folder, max_work=3 * unit):
            if passes == 4:
                assert _analyze(client, samples="3")["passes"] == 1
            refused = client.post("/api/v1/analyze", files={"file": ("a.png", random_png())}, data={"samples": "3", "tta": "flips", "mode": "sync"})
            error = assert_error(refused, 413, "too_much_work")
            assert f"x {passes} passes x (3 samples + 1)" in error["message"], error["message"]
            assert f"{passes * unit:,} units" in error["message"], error["message"]
            if passes == 4:
                assert "tta=none" in error["message"], error["message"]


def test_cli_analyze_and_evaluate_take_tta_and_report_the_method(ensemble_dir: Path, tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    image, mask = labelled_scene()
    (images / "s.png").write_bytes(image)
    (masks / "s.png").write_bytes(mask_png(mask))
    out = tmp_path / "out"
    assert (
        main(["analyze", str(images), "--out", str(out), "--samples", "2", "--tta", "photometric", "--model", str(ensemble_dir), "--quiet", "--save", "json"])
        == 0
    )
    facts = json.loads(next(out.glob("*/analysis.json")).read_text())
    assert (facts["method"], facts["passes"], facts["samples"], facts["tta"]) == ("ensemble(2) + tta:photometric + mc_dropout", 8, 2, "photometric")
    evaluated = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--images",
            str(images),
            "--masks",
            str(masks),
            "--out",
            str(evaluated),
            "--samples",
            "0",
            "--tta",
            "flips",
            "--model",
            str(ensemble_dir),
            "--quiet",
        ]
    )
    assert code == 0
    assert json.loads((evaluated / "metrics.json").read_text())["method"] == "ensemble(2) + tta:flips"
    with pytest.raises(SystemExit):
        main(["analyze", str(images), "--out", str(tmp_path / "x"), "--tta", "rotations"])


@pytest.mark.browser
def test_the_page_sends_the_augmentation_and_shows_the_method(page: Any, base_url: str) -> None:
    """Choosing flips in the page's control analyses again with tta=flips: the run line names the passes and the method,
    and the entropy panel's mean is the API's for the same settings."""
    image = random_png(40, 56, seed=81)
    page.fill("#samples", "0")
    page.set_input_files("#file-input", [{"name": "f.png", "mimeType": "image/png", "buffer": image}])
    page.wait_for_function(READY, timeout=60_000)
    assert "passes" not in page.inner_text("#run-info")
    page.select_option("#tta", "flips")
    page.wait_for_function("() => document.querySelector('#run-info').textContent.includes('4 passes (tta:flips)')", timeout=60_000)
    page.wait_for_function(READY, timeout=60_000)
    answer = httpx.post(f"{base_url}/api/v1/analyze", files={"file": ("f.png", image)}, data={"samples": "0", "seed": "0", "tta": "flips"}, timeout=60).json()
    entropy = next(m for m in answer["maps"] if m["name"] == "entropy")
    shown = page.inner_text("#panel-entropy .map-mean").removeprefix("image mean ")
    assert shown.endswith(" (exact)"), shown
    plain = httpx.post(f"{base_url}/api/v1/analyze", files={"file": ("f.png", image)}, data={"samples": "0", "seed": "0"}, timeout=60).json()
    plain_entropy = next(m for m in plain["maps"] if m["name"] == "entropy")["mean"]
    assert abs(entropy["mean"] - plain_entropy) > 0.02 * entropy["mean"]  # the two answers are told apart at 3 digits
    assert math.isclose(float(shown.split()[0]), entropy["mean"], rel_tol=5e-3), (shown, entropy["mean"])
    assert "deterministic passes" in page.inner_text("#error-method")
