"""Several models served at once (SEGU_MODELS, repeated ``serve --model``) and each model's default MC samples, against
real uvicorn servers holding two tiny bundles with different weights, classes and colours."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from webutil import LiveServer, assert_error, encode_image, mask_png, random_png, wait_ready, web_settings

from app.cli import main
from app.cli.serve import add_arguments, settings_overrides
from app.io.bundle import load_bundle
from app.maps.registry import MAP_NAMES
from app.request import AnalysisRequest
from app.web.factory import create_app
from app.web.service import AnalysisService
from app.web.settings import Settings
from app.workflows.analyzer import Analyzer

TIMEOUT = httpx.Timeout(60.0)
SECOND_CLASSES = ["sky", "road", "car", "person"]
SECOND_DEFAULT_SAMPLES = 6  # tests/conftest.py second_card


@pytest.fixture
def pair(two_model_server: LiveServer) -> LiveServer:
    """Both tiny bundles, the first the default, with no SEGU_DEFAULT_SAMPLES: each model's card decides."""
    return two_model_server


def post(url: str, image: bytes, endpoint: str = "analyze", files: dict[str, Any] | None = None, **form: object) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/{endpoint}", files={"file": ("scene.png", image), **(files or {})}, data={k: str(v) for k, v in form.items()}, timeout=TIMEOUT
    )


def npz(response: httpx.Response) -> dict[str, np.ndarray]:
    assert response.status_code == 200, response.text
    with np.load(io.BytesIO(response.content)) as data:
        return {key: data[key] for key in data.files}


def test_models_lists_both_the_first_the_default(pair: LiveServer) -> None:
    body = httpx.get(f"{pair.url}/api/v1/models").json()
    assert body["default"] == "tiny"
    assert [(m["name"], m["default"], m["ready"]) for m in body["models"]] == [("tiny", True, True), ("second", False, True)]
    assert [c["name"] for c in body["models"][1]["classes"]] == SECOND_CLASSES
    assert [c["colour"] for c in body["models"][1]["classes"]] == ["#0000ff", "#808080", "#ffff00", "#ff00ff"]
    assert [m["default_samples"] for m in body["models"]] == [20, SECOND_DEFAULT_SAMPLES]
    assert body["default_samples"] == 20
    ready = httpx.get(f"{pair.url}/readyz").json()
    assert ready == {"status": "ready", "model": "tiny", "device": "cpu", "models": ["tiny", "second"]}


def test_the_second_model_answers_as_its_own_analyzer(pair: LiveServer, second_bundle_dir: Path, tiny_bundle_dir: Path) -> None:
    image = random_png(40, 48, seed=21)
    served = npz(post(pair.url, image, samples=5, seed=3, format="npz", model="second", save="mean_probs"))
    expected = Analyzer(load_bundle(second_bundle_dir)).analyze_bytes(image, AnalysisRequest(samples=5, seed=3))
    assert served["mean_probs"].shape[0] == len(SECOND_CLASSES)
    np.testing.assert_array_equal(served["prediction"], expected.prediction)
    for name in MAP_NAMES:
        # float16 in the file: within 2^-11 relative (2^-25 absolute where subnormal), plus the 1e-6 the runs may differ by
        np.testing.assert_allclose(served[name], expected.maps[name], rtol=2**-11 + 1e-6, atol=2**-25 + 1e-7, err_msg=name)
    first = npz(post(pair.url, image, samples=5, seed=3, format="npz", save="mean_probs"))
    assert first["mean_probs"].shape[0] == 3, "no model named: the first"
    reference = Analyzer(load_bundle(tiny_bundle_dir)).analyze_bytes(image, AnalysisRequest(samples=5, seed=3))
    np.testing.assert_allclose(first["entropy"], reference.maps["entropy"], rtol=2**-11 + 1e-6, atol=2**-25 + 1e-7)
    named = post(pair.url, image, samples=1, model="second").json()
    assert named["model"] == "second" and [c["name"] for c in named["classes"]] == SECOND_CLASSES


def test_an_unknown_model_is_a_422_naming_the_models(pair: LiveServer) -> None:
    image = random_png(16, 16)
    for endpoint, files in (("analyze", None), ("evaluate", {"mask": ("m.png", encode_image(np.zeros((16, 16, 3), np.uint8)))})):
        error = assert_error(post(pair.url, image, endpoint, files, model="third"), 422, "unknown_model", "model")
        assert "'third'" in error["message"] and "tiny, second" in error["message"], error


def test_follow_ups_by_id_serve_the_model_that_made_the_analysis(pair: LiveServer, second_bundle_dir: Path) -> None:
    image = random_png(40, 56, seed=33)
    body = post(pair.url, image, samples=4, seed=2, model="second").json()
    arrays = npz(httpx.get(f"{pair.url}{body['npz_url']}", timeout=TIMEOUT))
    expected = Analyzer(load_bundle(second_bundle_dir)).analyze_bytes(image, AnalysisRequest(samples=4, seed=2))
    np.testing.assert_allclose(arrays["mutual_information"], expected.maps["mutual_information"], rtol=2**-11 + 1e-6, atol=2**-25 + 1e-7)
    for x, y in ((0, 0), (55, 39), (17, 23)):
        pixel = httpx.get(f"{pair.url}{body['pixel_url']}?x={x}&y={y}").json()
        label = int(arrays["prediction"][y, x])
        assert pixel["prediction"]["name"] == SECOND_CLASSES[label]
        # the pixel's exact float32 values, rounded as the file stores them (float16 for most maps)
        stored = {name: float(np.float32(value).astype(arrays[name].dtype)) for name, value in pixel["values"].items()}
        assert stored == {name: float(arrays[name][y, x]) for name in MAP_NAMES}
        assert len(pixel["top"]) == 3 and {c["name"] for c in pixel["top"]} <= set(SECOND_CLASSES)
    png = httpx.get(f"{pair.url}/api/v1/analyses/{body['analysis_id']}/maps/prediction.png", timeout=TIMEOUT)
    colours = {tuple(int(v) for v in rgb) for rgb in np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB")).reshape(-1, 3)}
    palette = {(0, 0, 255), (128, 128, 128), (255, 255, 0), (255, 0, 255)}
    assert colours <= palette and colours, "the second model's class colours"


def test_each_model_uses_its_own_default_samples(pair: LiveServer) -> None:
    image = random_png(24, 24, seed=5)
    assert post(pair.url, image).json()["samples"] == 20, "tiny's card has no default_samples: 20"
    assert post(pair.url, image, model="second").json()["samples"] == SECOND_DEFAULT_SAMPLES
    assert post(pair.url, image, model="second", samples=2).json()["samples"] == 2, "a request's samples win"
    mask = {"mask": ("m.png", mask_png(np.zeros((24, 24), np.uint8)))}
    assert post(pair.url, image, "evaluate", mask, model="second").json()["samples"] == SECOND_DEFAULT_SAMPLES


def test_segu_default_samples_overrides_every_card(tiny_bundle_dir: Path, second_bundle_dir: Path) -> None:
    settings = web_settings(tiny_bundle_dir, models=[str(tiny_bundle_dir), str(second_bundle_dir)], default_samples=3)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        wait_ready(client)
        models = client.get("/api/v1/models").json()
        assert [m["default_samples"] for m in models["models"]] == [3, 3]
        for model in ("tiny", "second"):
            answer = client.post("/api/v1/analyze", files={"file": ("a.png", random_png(16, 16))}, data={"model": model})
            assert answer.json()["samples"] == 3, model


def test_admission_is_shared_by_the_models(tiny_bundle_dir: Path, second_bundle_dir: Path) -> None:
    """One running slot and one queue place for both models: with a slow analysis of each admitted, a third is refused."""
    settings = web_settings(
        tiny_bundle_dir,
        models=[str(tiny_bundle_dir), str(second_bundle_dir)],
        max_concurrent=1,
        max_queue=1,
        max_samples=4096,
        max_pixels=300_000,
        max_work=1_400_000_000,  # room for two slow analyses' work: only the queue limit refuses the third
        request_timeout=2.0,
    )
    server = LiveServer(settings).start()
    services = server.app.state.services
    slow = encode_image(np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8), "JPEG")
    try:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(post, server.url, slow, samples=4096, resolution="full")
            deadline_wait(lambda: services.admission.running == 1)
            waiting = pool.submit(post, server.url, slow, samples=4096, resolution="full", model="second")
            deadline_wait(lambda: services.admission.waiting == 1)
            refused = post(server.url, random_png(16, 16), samples=1, model="second")
            assert_error(refused, 503, "overloaded")
            assert_error(running.result(), 504, "timeout")
            assert_error(waiting.result(), 504, "timeout")
        assert post(server.url, random_png(16, 16), samples=1, model="second").status_code == 200
    finally:
        server.stop()


def deadline_wait(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition never held"
        time.sleep(0.01)


def test_readiness_names_the_model_that_failed_its_warm_up_and_the_others_serve(
    tiny_bundle_dir: Path, second_bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = AnalysisService.warm_up

    def warm_up(service: AnalysisService) -> None:
        if service.name == "second":
            raise RuntimeError("out of memory")
        real(service)

    monkeypatch.setattr(AnalysisService, "warm_up", warm_up)
    with TestClient(create_app(web_settings(tiny_bundle_dir, models=[str(tiny_bundle_dir), str(second_bundle_dir)])), base_url="http://localhost") as client:
        deadline = time.monotonic() + 30
        while "warm-up" not in client.get("/readyz").text:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        error = assert_error(client.get("/readyz"), 503, "not_ready")
        assert error["message"] == "model second: warm-up analysis failed: out of memory"
        assert [(m["name"], m["ready"]) for m in client.get("/api/v1/models").json()["models"]] == [("tiny", True), ("second", False)]
        assert client.post("/api/v1/analyze", files={"file": ("a.png", random_png(16, 16))}, data={"samples": "1"}).status_code == 200
        refused = assert_error(client.post("/api/v1/analyze", files={"file": ("a.png", random_png(16, 16))}, data={"model": "second"}), 503, "not_ready")
        assert "out of memory" in refused["message"]


def test_two_bundles_of_one_name_are_a_startup_error(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(tiny_bundle_dir, twin)
    app = create_app(web_settings(tiny_bundle_dir, models=[str(tiny_bundle_dir), str(twin)]))
    with pytest.raises(ValueError, match=r"two models are named 'tiny' \(.*tiny and .*twin\)"), TestClient(app, base_url="http://localhost"):
        pass


def test_a_card_default_over_max_samples_is_a_startup_error(second_bundle_dir: Path) -> None:
    app = create_app(web_settings(second_bundle_dir, default_samples=None, max_samples=4))
    with pytest.raises(ValueError, match=r"model 'second' defaults to 6 MC samples .* SEGU_MAX_SAMPLES is 4"), TestClient(app, base_url="http://localhost"):
        pass


def test_default_settings_serve_the_synthetic_demo_and_the_person_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """``make run`` (no SEGU_MODEL, no SEGU_MODELS) serves both shipped models, the synthetic demo first; either variable narrows it."""
    monkeypatch.delenv("SEGU_MODEL", raising=False)
    monkeypatch.delenv("SEGU_MODELS", raising=False)
    assert Settings().model_sources == ["default", "person"]
    assert Settings(model="default").model_sources == ["default"], "SEGU_MODEL alone serves one model, as before"
    assert Settings(models=["person"]).model_sources == ["person"]


def test_settings_read_segu_models_and_still_segu_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGU_MODEL", "only")
    assert Settings().model_sources == ["only"]
    monkeypatch.setenv("SEGU_MODELS", "a, models/b ,c")
    assert Settings().model_sources == ["a", "models/b", "c"], "SEGU_MODELS replaces SEGU_MODEL"
    monkeypatch.setenv("SEGU_MODELS", "a,b,a")
    with pytest.raises(ValueError, match="lists a more than once"):
        Settings()


def test_serve_takes_repeated_model_options(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    monkeypatch.setenv("SEGU_MODELS", "from-env")
    args = parser.parse_args(["--model", "models/default", "--model", "/tmp/second", "--device", "cpu"])
    settings = Settings(**settings_overrides(args))
    assert (settings.model_sources, settings.device) == (["models/default", "/tmp/second"], "cpu")
    assert Settings(**settings_overrides(parser.parse_args([]))).model_sources == ["from-env"], "no --model: the environment's"


def test_cli_commands_default_to_the_cards_samples(second_bundle_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    image.write_bytes(random_png(20, 24, seed=4))
    assert main(["analyze", str(image), "--out", str(tmp_path / "out"), "--model", str(second_bundle_dir), "--device", "cpu", "--quiet"]) == 0
    assert json.loads((tmp_path / "out" / "a" / "analysis.json").read_text())["samples"] == SECOND_DEFAULT_SAMPLES
    assert main(["analyze", str(image), "--out", str(tmp_path / "o2"), "--model", str(second_bundle_dir), "--samples", "2", "--quiet"]) == 0
    assert json.loads((tmp_path / "o2" / "a" / "analysis.json").read_text())["samples"] == 2
