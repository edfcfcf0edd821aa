"""``POST /api/v1/evaluate`` against a real uvicorn server (and once in-process, with a fitted temperature)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sklearn.metrics import roc_auc_score
from webutil import TINY_CLASSES as CLASSES
from webutil import assert_error, encode_image, labelled_scene, mask_png, wait_ready, web_settings

from app.io.bundle import Bundle
from app.io.synthetic import make_scene
from app.web.encoding import decode_raw
from app.web.factory import create_app
from app.web.schemas.evaluation import EvaluateResponse

TIMEOUT = httpx.Timeout(60.0)
WRONG_RGB = (230, 25, 75)


def post(base_url: str, image: bytes, mask: bytes | None, **form: object) -> httpx.Response:
    files = {"file": ("scene.png", image, "image/png")}
    if mask is not None:
        files["mask"] = ("scene_mask.png", mask, "image/png")
    return httpx.post(f"{base_url}/api/v1/evaluate", files=files, data={k: str(v) for k, v in form.items()}, timeout=TIMEOUT)


def png_pixels(url: str) -> np.ndarray:
    head, payload = url.split(",", 1)
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


def numpy_ece(probs: np.ndarray, mask: np.ndarray, valid: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE over equal-width bins, computed directly."""
    p = probs.reshape(probs.shape[0], -1)[:, valid.ravel()].astype(np.float64)
    conf, correct = p.max(0), p.argmax(0) == mask.ravel()[valid.ravel()]
    idx = np.minimum((conf * bins).astype(np.int64), bins - 1)
    return float(sum(abs(correct[idx == b].sum() - conf[idx == b].sum()) for b in range(bins)) / conf.size)


def test_round_trip_metrics_match_independent_computation(base_url: str) -> None:
    image, mask = labelled_scene()
    response = post(base_url, image, mask_png(mask), samples=4, seed=2, ood_label=255, raw="true")
    assert response.status_code == 200, response.text
    body = EvaluateResponse.model_validate(response.json())
    assert (body.width, body.height, body.samples, body.seed) == (64, 64, 4, 2)
    assert body.prediction.labels is not None and body.mean_probs is not None
    labels, probs = decode_raw(body.prediction.labels), decode_raw(body.mean_probs)
    valid = mask != 255
    assert 0 < (~valid).sum() < mask.size

    seg = body.metrics.segmentation
    assert seg.pixels == int(valid.sum())
    assert seg.pixel_accuracy == pytest.approx(float((labels[valid] == mask[valid]).mean()), abs=1e-12)
    ious = []
    for c in range(CLASSES):
        inter, union = ((labels == c) & (mask == c) & valid).sum(), (((labels == c) | (mask == c)) & valid).sum()
        if union:
            ious.append(inter / union)
    assert seg.miou == pytest.approx(float(np.mean(ious)), abs=1e-9)

    assert body.error_map.values is not None and body.error_map.png is not None
    codes = decode_raw(body.error_map.values)
    expected = np.where(valid, labels != mask, 2).astype(np.uint8)
    np.testing.assert_array_equal(codes, expected)
    assert (body.error_map.correct, body.error_map.wrong, body.error_map.ignored) == tuple(int((expected == k).sum()) for k in range(3))
    assert body.error_map.wrong > 0 and body.error_map.out_of_range == 0
    rgb = png_pixels(body.error_map.png)
    assert rgb.shape == (64, 64, 3)
    assert np.all(rgb[codes == 1] == WRONG_RGB) and not np.any(np.all(rgb[codes != 1] == WRONG_RGB, axis=-1))

    calibration = body.metrics.calibration
    assert set(calibration) == {"softmax", "mc_mean"}
    for name, stats in calibration.items():
        assert 0.0 <= stats.ece <= 1.0, name
        assert sum(stats.reliability.count) == stats.pixels == seg.pixels
    assert calibration["mc_mean"].ece == pytest.approx(numpy_ece(probs, mask, valid), abs=1e-6)

    maps = {m.name: decode_raw(m.values) for m in body.maps if m.values is not None}
    wrong = (labels != mask)[valid]
    assert set(body.metrics.error_detection) == {"confidence", "entropy", "variance", "mutual_information"}
    assert body.metrics.error_detection["confidence"].auroc == pytest.approx(roc_auc_score(wrong, 1 - maps["confidence"][valid]), abs=2e-3)
    assert body.metrics.ood_detection is not None
    ood_auroc = body.metrics.ood_detection["mutual_information"].auroc
    assert ood_auroc == pytest.approx(roc_auc_score((mask == 255).ravel(), maps["mutual_information"].ravel()), abs=2e-3)

    diagram = png_pixels(body.reliability_png)
    assert diagram.shape[0] > 300 and diagram.shape[1] > 300 and len(np.unique(diagram.reshape(-1, 3), axis=0)) > 3

    plain = httpx.post(
        f"{base_url}/api/v1/analyze", files={"file": ("scene.png", image)}, data={"samples": "4", "seed": "2", "raw": "true"}, timeout=TIMEOUT
    ).json()
    assert plain["prediction"]["labels"]["data"] == body.prediction.labels.data
    assert [m["values"]["data"] for m in plain["maps"]] == [m.values.data for m in body.maps if m.values is not None]


def test_ood_auroc_only_with_an_ood_label_and_ood_pixels(base_url: str) -> None:
    image, mask = labelled_scene()
    without_label = post(base_url, image, mask_png(mask), samples=2).json()
    assert without_label["metrics"]["ood_detection"] is None and without_label["metrics"]["ood_label"] is None
    in_distribution = np.where(mask == 255, 0, mask)
    no_ood_pixels = post(base_url, image, mask_png(in_distribution), samples=2, ood_label=255).json()
    ood = no_ood_pixels["metrics"]["ood_detection"]
    assert set(ood) == {"confidence", "entropy", "variance", "mutual_information"}
    assert all(v["auroc"] is None for v in ood.values())
    assert no_ood_pixels["error_map"]["ignored"] == 0
    with_ood = post(base_url, image, mask_png(mask), samples=2, ood_label=255).json()
    assert all(isinstance(v["auroc"], float) and 0.0 <= v["auroc"] <= 1.0 for v in with_ood["metrics"]["ood_detection"].values())


def test_ignore_index_and_out_of_range_labels(base_url: str) -> None:
    image, mask = labelled_scene()
    relabelled = np.where(mask == 255, 7, mask)
    relabelled[:4, :4] = 9
    body = post(base_url, image, mask_png(relabelled), samples=0, ignore_index=7, raw="true").json()
    values = EvaluateResponse.model_validate(body).error_map.values
    assert values is not None
    codes = decode_raw(values)
    np.testing.assert_array_equal(codes == 2, relabelled >= CLASSES)
    assert body["error_map"]["out_of_range"] == 16
    assert body["metrics"]["ignore_index"] == 7 and body["metrics"]["segmentation"]["pixels"] == int((relabelled < CLASSES).sum())


def _truncated_mask() -> bytes:
    noisy = np.random.default_rng(0).integers(0, CLASSES, (64, 64)).astype(np.uint8)
    data = mask_png(noisy)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("mask", "form", "status", "code", "field", "words"),
    [
        (None, {}, 422, "validation_error", "mask", ["mask", "required"]),
        (encode_image(make_scene("ood", 3, size=64).image), {}, 422, "mask_not_single_channel", "mask", ["single-channel", "RGB"]),
        (mask_png(np.zeros((32, 64), np.uint8)), {}, 422, "mask_size_mismatch", "mask", ["64x32", "64x64"]),
        (b"these are words, not pixels", {}, 415, "unsupported_media_type", "mask", ["not an image"]),
        (_truncated_mask(), {}, 422, "corrupt_mask", "mask", ["truncated"]),
        (mask_png(np.zeros((64, 64), np.uint8)), {"ood_label": 1}, 422, "validation_error", "ood_label", ["class of the model"]),
        (mask_png(np.zeros((64, 64), np.uint8)), {"ignore_index": -1}, 422, "validation_error", "ignore_index", ["ignore_index"]),
    ],
    ids=["missing-mask", "rgb-mask", "size-mismatch", "not-an-image", "truncated", "ood-label-is-a-class", "negative-ignore-index"],
)
def test_bad_mask_errors(base_url: str, mask: bytes | None, form: dict[str, object], status: int, code: str, field: str, words: list[str]) -> None:
    image, good = labelled_scene()
    error = assert_error(post(base_url, image, mask, samples=2, **form), status, code, field)
    for word in words:
        assert word.lower() in error["message"].lower(), error
    after = post(base_url, image, mask_png(good), samples=2)
    assert after.status_code == 200, after.text
    assert after.json()["metrics"]["segmentation"]["pixels"] == int((good != 255).sum())


def test_temperature_scaled_and_calibrated_metrics(tiny_bundle: Bundle, tiny_bundle_dir: Path) -> None:
    tau = 2.5
    tiny_bundle.card.temperature = tau
    image, mask = labelled_scene(index=4)
    files = {"file": ("scene.png", image), "mask": ("mask.png", mask_png(mask))}
    with TestClient(create_app(web_settings(tiny_bundle_dir, warmup=False), bundle=tiny_bundle)) as client:
        wait_ready(client)
        plain = client.post("/api/v1/evaluate", files=files, data={"samples": "0", "raw": "true"}).json()
        hot = client.post("/api/v1/evaluate", files=files, data={"samples": "0", "calibrated": "true"}).json()
    assert (plain["calibrated"], hot["calibrated"], hot["temperature"]) == (False, True, tau)
    p, h = plain["metrics"], hot["metrics"]
    assert p["temperature"] == h["temperature"] == tau
    assert set(p["calibration"]) == set(h["calibration"]) == {"softmax", "softmax_scaled", "mc_mean"}
    for key in ("ece", "nll", "brier"):
        assert h["calibration"]["softmax"][key] == pytest.approx(p["calibration"]["softmax"][key], abs=1e-5)
        assert h["calibration"]["softmax_scaled"][key] == pytest.approx(p["calibration"]["softmax_scaled"][key], abs=1e-5)
        assert p["calibration"]["mc_mean"][key] == pytest.approx(p["calibration"]["softmax"][key], abs=1e-6)
        assert h["calibration"]["mc_mean"][key] == pytest.approx(p["calibration"]["softmax_scaled"][key], abs=1e-5)
    mean_probs = EvaluateResponse.model_validate(plain).mean_probs
    assert mean_probs is not None
    probs = decode_raw(mean_probs).astype(np.float64)
    scaled = np.exp(np.log(np.clip(probs, 1e-30, None)) / tau)
    scaled /= scaled.sum(0, keepdims=True)
    valid = (mask != 255).ravel()
    p_true = np.take_along_axis(scaled.reshape(CLASSES, -1)[:, valid], mask.ravel()[valid][None].astype(np.int64), 0)
    assert p["calibration"]["softmax_scaled"]["nll"] == pytest.approx(float(-np.log(p_true).mean()), rel=1e-4)
    assert p["calibration"]["softmax_scaled"]["nll"] != pytest.approx(p["calibration"]["softmax"]["nll"], rel=1e-3)
