"""In-process tests of the app factory, settings, page template, OpenAPI and error plumbing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from webutil import random_png, wait_ready, web_settings

from app.io.bundle import Bundle
from app.web.encoding import decode_raw, download_name, raw_array
from app.web.factory import create_app
from app.web.limits import BodyLimitMiddleware
from app.web.routes.page import colour_gradient
from app.web.service import AnalysisService
from app.web.settings import Settings


@pytest.fixture
def client(tiny_bundle: Bundle, tiny_bundle_dir: Path) -> Iterator[TestClient]:
    app = create_app(web_settings(tiny_bundle_dir), bundle=tiny_bundle)
    with TestClient(app) as c:
        wait_ready(c)
        yield c


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGU_MODEL", "somewhere/else")
    monkeypatch.setenv("SEGU_MAX_SAMPLES", "8")
    monkeypatch.setenv("SEGU_DEFAULT_SAMPLES", "3")
    monkeypatch.setenv("SEGU_CORS_ORIGINS", "http://a.example, https://b.example:8443")
    settings = Settings()
    assert (settings.model, settings.max_samples, settings.default_samples) == ("somewhere/else", 8, 3)
    assert settings.cors_origins == ["http://a.example", "https://b.example:8443"]
    assert Settings().device == "auto"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"default_samples": 70, "max_samples": 64},
        {"device": "tpu"},
        {"max_body_bytes": 10},
        {"max_pixels": 0},
        {"cors_origins": ["http://a.example/path"]},
        {"max_concurrent": 0},
    ],
)
def test_settings_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(**kwargs)


def test_settings_are_read_by_the_factory_not_at_import(monkeypatch: pytest.MonkeyPatch, tiny_bundle: Bundle) -> None:
    monkeypatch.setenv("SEGU_DEVICE", "not-a-device")
    import importlib

    import app.web.factory

    importlib.reload(app.web.factory)
    with pytest.raises(ValidationError, match="device"):
        app.web.factory.create_app(bundle=tiny_bundle)


def test_not_ready_before_lifespan(tiny_bundle: Bundle, tiny_bundle_dir: Path) -> None:
    bare = TestClient(create_app(web_settings(tiny_bundle_dir), bundle=tiny_bundle))
    assert bare.get("/healthz").json() == {"status": "ok"}
    ready = bare.get("/readyz")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
    analyze = bare.post("/api/v1/analyze", files={"file": ("a.png", random_png(16, 16))})
    assert analyze.status_code == 503 and analyze.json()["error"]["code"] == "not_ready"


def test_failed_warm_up_keeps_the_server_not_ready(tiny_bundle: Bundle, tiny_bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_self: AnalysisService) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(AnalysisService, "warm_up", broken)
    with TestClient(create_app(web_settings(tiny_bundle_dir), bundle=tiny_bundle)) as c:
        deadline = time.monotonic() + 10
        while "warm-up" not in c.get("/readyz").text:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        response = c.get("/readyz")
        assert response.status_code == 503
        assert response.json()["error"] == {"code": "not_ready", "message": "warm-up analysis failed: out of memory"}
        assert c.get("/healthz").status_code == 200


def test_page_template_and_context(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.template.name == "index.html"  # type: ignore[attr-defined]
    context = response.context  # type: ignore[attr-defined]
    assert context["model_name"] == "tiny"
    assert [c["name"] for c in context["classes"]] == ["bg", "a", "b"]
    assert [m["name"] for m in context["panel_maps"]] == ["confidence", "entropy", "variance", "mutual_information", "feature_distance"]
    assert context["config"]["panels"] == ["input", "prediction", "confidence", "entropy", "variance", "mutual_information", "feature_distance"]
    assert context["unavailable"] == ["feature_distance"] and context["config"]["models"][0]["unavailable"] == ["feature_distance"], "no fitted density"
    assert context["config"]["maxSamples"] == 16 and context["default_samples"] == 4
    ranges = {m["name"]: m["range"] for m in context["maps"]}
    assert ranges["confidence"] == pytest.approx([1 / 3, 1.0]) and ranges["entropy"] == pytest.approx([0.0, np.log(3)])
    html = response.text
    for name in ("bg", "#ff0000", 'id="panel-input"', 'id="panel-prediction"', 'id="panel-mutual_information"', "/static/js/main.js", "/static/style.css"):
        assert name in html
    assert "https://" not in html and "http://" not in html
    assert '<figure class="panel" id="panel-feature_distance" data-panel="feature_distance" data-unavailable="">' in html
    assert "has no fitted feature density, so it has no feature-distance map: see <code>seg-uncertainty fit-density --help</code>" in html


def test_colour_gradient_uses_the_lut() -> None:
    gradient = colour_gradient("viridis", stops=3)
    assert gradient.startswith("linear-gradient(to right, rgb(68,1,84) 0.00%")
    assert gradient.endswith("rgb(253,231,37) 100.00%)")


def form_fields(schemas: dict[str, Any], name: str) -> dict[str, Any]:
    """A multipart body's fields: its own properties and those of the form model it extends (``allOf``)."""
    schema = schemas[name]
    fields = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        fields.update(schemas[part["$ref"].rsplit("/", 1)[-1]]["properties"])
    return fields


def test_openapi_documents_every_field(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {
        "/api/v1/analyze",
        "/api/v1/evaluate",
        "/api/v1/models",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/analyses/{analysis_id}/maps/{name}.png",
        "/api/v1/analyses/{analysis_id}/maps.npz",
        "/api/v1/analyses/{analysis_id}/pixel",
        "/api/v1/analyses/{analysis_id}/masks/{name}.png",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/result",
        "/api/v1/jobs/{job_id}/events",
    }
    assert set(spec["paths"]["/api/v1/jobs/{job_id}"]) == {"get", "delete"}
    assert set(spec["paths"]["/api/v1/analyze"]["post"]["responses"]) >= {"200", "202", "413"}
    undocumented = [
        f"{schema_name}.{prop}"
        for schema_name, schema in spec["components"]["schemas"].items()
        if schema_name not in ("HTTPValidationError", "ValidationError")
        for prop, field in schema.get("properties", {}).items()
        if not field.get("description")
    ]
    assert undocumented == []
    schemas = spec["components"]["schemas"]
    form = form_fields(schemas, "Body_analyze_api_v1_analyze_post")
    assert set(form) == {
        *("file", "samples", "seed", "calibrated", "resolution", "format", "save", "raw", "raw_dtype", "model", "tta", "mode"),
        *("adversarial", "adversarial_epsilons", "adversarial_steps"),
    }
    assert form["save"]["default"] == "" and "class_variance" in form["save"]["description"]
    npz_query = {p["name"]: p for p in spec["paths"]["/api/v1/analyses/{analysis_id}/maps.npz"]["get"]["parameters"]}
    assert npz_query["save"]["in"] == "query" and "mean_probs" in npz_query["save"]["description"]
    # an integer from 0 (its limit is the server's max_samples, checked per request), or omitted: the model's default
    assert [kind.get("minimum") for kind in form["samples"]["anyOf"]] == [0, None] and "max_samples" in form["samples"]["description"]
    assert form["resolution"]["enum"] == ["working", "full"] and form["resolution"]["default"] == "working"
    assert form["raw"]["default"] is False
    assert set(spec["paths"]["/api/v1/analyze"]["post"]["responses"]) >= {"200", "413", "415", "422"}
    evaluate_form = schemas["Body_evaluate_api_v1_evaluate_post"]
    evaluate_fields = {"file", "mask", "samples", "seed", "calibrated", "resolution", "ignore_index", "ood_label", "raw", "raw_dtype", "model", "tta", "mode"}
    assert set(form_fields(schemas, "Body_evaluate_api_v1_evaluate_post")) == evaluate_fields
    assert set(evaluate_form["required"]) == {"file", "mask"}
    assert set(spec["components"]["schemas"]["EvaluateResponse"]["properties"]) >= {"maps", "prediction", "metrics", "error_map", "reliability_png"}
    assert set(spec["paths"]["/api/v1/evaluate"]["post"]["responses"]) >= {"200", "413", "415", "422"}
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_unexpected_errors_are_500_without_trace(tiny_bundle: Bundle, tiny_bundle_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(web_settings(tiny_bundle_dir, warmup=False), bundle=tiny_bundle)

    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/boom")
        assert response.status_code == 500
        assert response.json() == {"error": {"code": "internal_error", "message": "an unexpected error occurred on the server; it has been logged"}}
        assert "secret" not in response.text and "Traceback" not in response.text
        assert c.get("/healthz").status_code == 200
    assert any("secret internal detail" in str(r.exc_info) for r in caplog.records if r.exc_info)


def test_cors_only_when_configured(tiny_bundle: Bundle, tiny_bundle_dir: Path) -> None:
    headers = {"Origin": "http://a.example", "Access-Control-Request-Method": "POST"}
    allowed = create_app(web_settings(tiny_bundle_dir, cors_origins=["http://a.example"], warmup=False), bundle=tiny_bundle)
    with TestClient(allowed) as c:
        response = c.options("/api/v1/analyze", headers=headers)
        assert response.headers.get("access-control-allow-origin") == "http://a.example"
    closed = create_app(web_settings(tiny_bundle_dir, warmup=False), bundle=tiny_bundle)
    with TestClient(closed) as c:
        assert "access-control-allow-origin" not in c.get("/healthz", headers={"Origin": "http://a.example"}).headers


def test_calibrated_uses_the_bundle_temperature(tiny_bundle: Bundle, tiny_bundle_dir: Path) -> None:
    tiny_bundle.card.temperature = 2.5
    app = create_app(web_settings(tiny_bundle_dir, warmup=False), bundle=tiny_bundle)
    with TestClient(app) as c:
        wait_ready(c)
        image = random_png(24, 24, seed=3)
        plain = c.post("/api/v1/analyze", files={"file": ("a.png", image)}, data={"samples": "2"}).json()
        hot = c.post("/api/v1/analyze", files={"file": ("a.png", image)}, data={"samples": "2", "calibrated": "true"}).json()
        page = c.get("/")
    assert (plain["temperature"], plain["calibrated"], plain["model_temperature"]) == (1.0, False, 2.5)
    assert (hot["temperature"], hot["calibrated"]) == (2.5, True)
    assert hot["maps"][0]["mean"] < plain["maps"][0]["mean"]
    assert page.context["temperature"] == 2.5 and "2.5" in page.text  # type: ignore[attr-defined]


def test_raw_array_round_trip_is_little_endian() -> None:
    values = np.array([[0.5, -1.25], [3.0, 65504.0]], dtype=np.float32)
    for dtype in ("float32", "float16"):
        raw = raw_array(values, dtype)
        assert raw.shape == [2, 2] and raw.byte_order == "little"
        np.testing.assert_array_equal(decode_raw(raw), values)
    labels = raw_array(np.array([[0, 2], [1, 255]]), "uint8")
    assert labels.data == "AAIB/w=="


@pytest.mark.parametrize(
    ("name", "expected"),
    [("photo.final.JPG", "photo.final_maps.npz"), ('../../evil "x".png', "evil_x_maps.npz"), (None, "analysis_maps.npz"), ("...", "analysis_maps.npz")],
)
def test_download_name_is_safe(name: str | None, expected: str) -> None:
    assert download_name(name, "_maps.npz") == expected


async def _collect(app: Any, messages: list[dict[str, Any]], headers: list[tuple[bytes, bytes]]) -> tuple[list[dict[str, Any]], int]:
    consumed = 0
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        nonlocal consumed
        consumed += 1
        return pending.pop(0)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": "POST", "path": "/", "headers": headers}, receive, send)
    return sent, consumed


def test_body_limit_middleware_stops_reading_past_the_limit() -> None:
    async def echo_app(scope: Any, receive: Any, send: Any) -> None:
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(total).encode()})

    import anyio

    middleware = BodyLimitMiddleware(echo_app, max_bytes=1000)
    chunks = [{"type": "http.request", "body": b"x" * 300, "more_body": True} for _ in range(100)]
    sent, consumed = anyio.run(_collect, middleware, chunks, [])
    assert sent[0]["status"] == 413 and consumed == 4
    assert b"body_too_large" in sent[1]["body"]
    sent, consumed = anyio.run(_collect, middleware, chunks, [(b"content-length", b"30000")])
    assert sent[0]["status"] == 413 and consumed == 0
    small = [{"type": "http.request", "body": b"x" * 300, "more_body": True}, {"type": "http.request", "body": b"x" * 300, "more_body": False}]
    sent, consumed = anyio.run(_collect, middleware, small, [(b"content-length", b"600")])
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"600"


def _threads_in_a_new_thread() -> int:
    """PyTorch's thread count as a fresh thread (like the server's worker threads) sees it."""
    import threading

    import torch

    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    return seen[0]


def test_torch_threads_setting_is_applied_when_the_app_starts(tiny_bundle: Bundle) -> None:
    """SEGU_TORCH_THREADS sets PyTorch's thread count for the server's worker threads (0 leaves it alone)."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with TestClient(create_app(Settings(device="cpu", warmup=False, torch_threads=2), bundle=tiny_bundle), base_url="http://localhost"):
            assert _threads_in_a_new_thread() == 2
        torch.set_num_threads(1)
        with TestClient(create_app(Settings(device="cpu", warmup=False), bundle=tiny_bundle), base_url="http://localhost"):
            assert _threads_in_a_new_thread() == 1
    finally:
        torch.set_num_threads(before)
