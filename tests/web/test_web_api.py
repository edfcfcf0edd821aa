"""REST API tests against a real uvicorn server on a loopback port."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from webutil import MAX_BODY, MAX_PIXELS, MAX_SAMPLES, assert_error, encode_image, random_png

from app.io.npz import FLOAT32_MAPS
from app.maps.registry import MAP_NAMES
from app.request import AnalysisRequest
from app.web.encoding import decode_raw
from app.web.schemas.analysis import AnalyzeResponse

TIMEOUT = httpx.Timeout(60.0)


def post(base_url: str, data: bytes | None, filename: str = "scene.png", **form: object) -> httpx.Response:
    files = {"file": (filename, data, "application/octet-stream")} if data is not None else None
    return httpx.post(f"{base_url}/api/v1/analyze", files=files, data={k: str(v) for k, v in form.items()}, timeout=TIMEOUT)


def data_url_image(url: str | None) -> np.ndarray:
    assert url is not None, "no image in the answer"
    head, payload = url.split(",", 1)
    assert head in ("data:image/png;base64", "data:image/jpeg;base64")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


def assert_still_serving(base_url: str) -> None:
    response = post(base_url, random_png(32, 32, seed=7), samples=2)
    assert response.status_code == 200, response.text
    assert response.json()["width"] == 32


def test_json_round_trip_matches_npz(base_url: str) -> None:
    image = random_png(48, 64, seed=1)
    response = post(base_url, image, samples=5, seed=3, raw="true")
    assert response.status_code == 200, response.text
    body = AnalyzeResponse.model_validate(response.json())
    assert (body.width, body.height, body.samples, body.seed, body.model) == (64, 48, 5, 3, "tiny")
    assert [c.name for c in body.classes] == ["bg", "a", "b"]
    assert body.temperature == 1.0 and body.calibrated is False
    assert set(body.timings.model_dump()) == {"decode", "inference", "regions", "encode", "total"}
    assert body.timings.total >= body.timings.inference > 0

    npz_response = post(base_url, image, samples=5, seed=3, format="npz", save="mean_probs")
    assert npz_response.status_code == 200
    assert npz_response.headers["content-type"] == "application/x-npz"
    assert npz_response.headers["content-disposition"] == 'attachment; filename="scene_maps.npz"'
    npz = np.load(io.BytesIO(npz_response.content))
    assert set(npz.files) == {*MAP_NAMES, "prediction", "mean_probs"}

    assert [m.name for m in body.maps] == list(MAP_NAMES)
    for m in body.maps:
        assert m.values is not None and m.values.dtype == "float32" and m.values.shape == [48, 64]
        values = decode_raw(m.values)
        assert npz[m.name].dtype == (np.float32 if m.name in FLOAT32_MAPS else np.float16)
        np.testing.assert_array_equal(values.astype(npz[m.name].dtype), npz[m.name])
        lo, hi = m.range
        assert values.min() >= lo - 1e-5 and values.max() <= hi + 1e-5
        assert m.mean == pytest.approx(float(values.mean(dtype=np.float64)), abs=1e-6)
        assert data_url_image(m.png).shape == (48, 64, 3)
    assert body.prediction.labels is not None and body.prediction.labels.dtype == "uint8"
    labels = decode_raw(body.prediction.labels)
    np.testing.assert_array_equal(labels, npz["prediction"])
    assert body.mean_probs is not None and body.mean_probs.shape == [3, 48, 64]
    probs = decode_raw(body.mean_probs)
    np.testing.assert_array_equal(probs, npz["mean_probs"])
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(axis=0), labels)
    assert data_url_image(body.prediction.png).shape == (48, 64, 3)
    assert data_url_image(body.image).shape == (48, 64, 3)
    class_rows = [r for r in body.regions if r.kind == "class"]
    assert sum(r.pixels for r in class_rows) == 48 * 64
    assert sum(body.class_shares.values()) == pytest.approx(1.0)


def test_float16_raw_and_no_raw(base_url: str) -> None:
    image = random_png(40, 40, seed=2)
    full = post(base_url, image, samples=3, seed=1, raw="true").json()
    half = post(base_url, image, samples=3, seed=1, raw="true", raw_dtype="float16").json()
    for a, b in zip(full["maps"], half["maps"], strict=True):
        assert b["values"]["dtype"] == "float16"
        exact = np.frombuffer(base64.b64decode(a["values"]["data"]), "<f4")
        approx = np.frombuffer(base64.b64decode(b["values"]["data"]), "<f2")
        np.testing.assert_allclose(approx, exact, atol=1e-3, rtol=1e-3)
    lean = post(base_url, image, samples=3, seed=1, raw="false").json()
    default = post(base_url, image, samples=3, seed=1).json()
    assert [m["quantised"] for m in default["maps"]] == [m["quantised"] for m in lean["maps"]] and default["maps"][0]["png"] is None
    assert lean["mean_probs"] is None and lean["prediction"]["labels"] is None and lean["prediction"]["png"] is None
    assert all(m["values"] is None and m["png"] is None for m in lean["maps"])
    assert [m["quantised"] for m in lean["maps"]] == [m["quantised"] for m in full["maps"]]


def test_same_seed_same_maps_other_seed_differs(base_url: str) -> None:
    image = random_png(32, 32, seed=4)
    first, again, other = (post(base_url, image, samples=4, seed=s, raw="true").json() for s in (11, 11, 12))
    assert first["maps"][3]["values"]["data"] == again["maps"][3]["values"]["data"]
    assert first["maps"][3]["values"]["data"] != other["maps"][3]["values"]["data"]


def test_zero_samples_is_deterministic_with_zero_mutual_information(base_url: str) -> None:
    body = AnalyzeResponse.model_validate(post(base_url, random_png(32, 32, seed=5), samples=0, raw="true").json())
    assert body.samples == 0
    maps = {m.name: decode_raw(m.values) for m in body.maps if m.values is not None}
    assert set(maps) == set(MAP_NAMES)
    assert float(np.abs(maps["mutual_information"]).max()) < 1e-5
    assert float(maps["variance"].max()) < 1e-8


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"this is plain text, not an image at all", 415, "unsupported_media_type"),
        (b"", 415, "unsupported_media_type"),
        (random_png(64, 64, seed=3)[:300], 422, "corrupt_image"),
        (encode_image(np.zeros((200, 200, 3), np.uint8)), 413, "too_many_pixels"),
    ],
    ids=["not-an-image", "empty", "truncated-png", "too-many-pixels"],
)
def test_bad_upload_errors(base_url: str, payload: bytes, status: int, code: str) -> None:
    assert MAX_PIXELS < 200 * 200
    error = assert_error(post(base_url, payload), status, code, "file")
    if code == "too_many_pixels":
        assert str(MAX_PIXELS) in error["message"]
    assert_still_serving(base_url)


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"samples": MAX_SAMPLES + 1}, "samples"),
        ({"samples": -1}, "samples"),
        ({"seed": -5}, "seed"),
        ({"format": "tiff"}, "format"),
        ({"format": "npz", "save": "probs,logits"}, "save"),
        ({"samples": "many"}, "samples"),
    ],
)
def test_parameter_out_of_range(base_url: str, form: dict[str, object], field: str) -> None:
    error = assert_error(post(base_url, random_png(16, 16), **{k: str(v) for k, v in form.items()}), 422, "validation_error", field)
    assert field in error["message"]
    assert_still_serving(base_url)


def test_missing_file(base_url: str) -> None:
    error = assert_error(post(base_url, None, samples=2), 422, "validation_error", "file")
    assert "required" in error["message"].lower()
    assert_still_serving(base_url)


def _multipart_stream(boundary: str, size: int) -> Iterator[bytes]:
    yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
    chunk = bytes(range(256)) * 64
    for _ in range(size // len(chunk)):
        yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def test_oversize_body_streamed_without_content_length(base_url: str) -> None:
    boundary = "segu-test-boundary"
    request = httpx.Request(
        "POST",
        f"{base_url}/api/v1/analyze",
        content=_multipart_stream(boundary, 8 * MAX_BODY),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "content-length" not in request.headers and request.headers["transfer-encoding"] == "chunked"
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.send(request)
    error = assert_error(response, 413, "body_too_large")
    assert str(MAX_BODY) in error["message"]
    assert_still_serving(base_url)


def test_oversize_body_with_content_length(base_url: str) -> None:
    response = post(base_url, b"\x89PNG" + bytes(4 * MAX_BODY))
    assert_error(response, 413, "body_too_large")
    assert_still_serving(base_url)


def test_concurrent_requests_match_sequential(base_url: str) -> None:
    image = random_png(96, 96, seed=9)
    seeds = (101, 202)
    sequential = {seed: post(base_url, image, samples=12, seed=seed, raw="true").json() for seed in seeds}
    results: dict[int, dict[str, Any]] = {}
    barrier = threading.Barrier(len(seeds))

    def worker(seed: int) -> None:
        barrier.wait()
        results[seed] = post(base_url, image, samples=12, seed=seed, raw="true").json()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert set(results) == set(seeds)
    for seed in seeds:
        for key in ("mean_probs",):
            assert results[seed][key]["data"] == sequential[seed][key]["data"]
        assert [m["values"]["data"] for m in results[seed]["maps"]] == [m["values"]["data"] for m in sequential[seed]["maps"]]
    assert sequential[101]["mean_probs"]["data"] != sequential[202]["mean_probs"]["data"]


def test_health_ready_and_models(base_url: str) -> None:
    assert httpx.get(f"{base_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{base_url}/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "model": "tiny", "device": "cpu", "models": ["tiny"]}
    models = httpx.get(f"{base_url}/api/v1/models").json()
    assert models["default"] == "tiny" and models["max_samples"] == MAX_SAMPLES
    card = models["models"][0]
    assert [c["colour"] for c in card["classes"]] == ["#000000", "#ff0000", "#00ff00"]
    assert card["dropout"] == {"sites": ["head"], "rate": 0.3, "mode": "channel", "trained_with_dropout": True}
    assert card["normalization"]["std"] == [0.229, 0.224, 0.225]
    assert card["temperature"] == 1.0


@pytest.mark.parametrize(
    ("method", "path", "status", "code"), [("GET", "/api/v1/nothing", 404, "not_found"), ("DELETE", "/api/v1/analyze", 405, "method_not_allowed")]
)
def test_unknown_route_and_method(base_url: str, method: str, path: str, status: int, code: str) -> None:
    assert_error(httpx.request(method, f"{base_url}{path}"), status, code)


def test_page_and_static_are_served(base_url: str) -> None:
    page = httpx.get(f"{base_url}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/style.css", "/static/js/main.js"):
        response = httpx.get(f"{base_url}{asset}")
        assert response.status_code == 200, asset
        assert len(response.content) > 100


def test_map_and_region_errors_equal_the_library(base_url: str, tiny_bundle_dir: Path) -> None:
    """The response's ``mean_error`` per map and ``errors`` per region are the analyzer's jackknife errors."""
    from app.io.bundle import load_bundle
    from app.workflows.analyzer import Analyzer

    image = random_png(40, 48, seed=11)
    response = post(base_url, image, samples=9, seed=2)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = Analyzer(load_bundle(tiny_bundle_dir)).analyze_bytes(image, AnalysisRequest(samples=9, seed=2))
    assert body["error_method"] == "jackknife"
    assert {m["name"]: m["mean_error"] for m in body["maps"]} == pytest.approx(expected.mean_errors, rel=1e-9)
    assert len(body["regions"]) == len(expected.regions)
    for row, region in zip(body["regions"], expected.regions, strict=True):
        assert row["errors"] == pytest.approx(region.errors, rel=5e-3), row
    mutual_information = expected.mean_errors["mutual_information"]
    assert mutual_information is not None and mutual_information > 0
