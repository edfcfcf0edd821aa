"""Adversarial sensitivity through the API, against a real uvicorn server: a 256² image answered with per-ε flip shares and the
flip-ε map, consistent with the perturbed images and predictions it sends; off by default; bad radii → 422; too large → 413."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from webutil import LiveServer, assert_error, random_png, web_settings

from app.engine.attack_target import pixel_log_probs
from app.io.bundle import load_bundle
from app.web.encode_adversarial import NEVER_INDEX

SIZE = 256


@pytest.fixture(scope="module")
def server(tiny_bundle_dir: Path) -> Iterator[LiveServer]:
    live = LiveServer(web_settings(tiny_bundle_dir, max_pixels=400_000, max_body_bytes=2**22)).start()
    yield live
    live.stop()


def png_array(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def post(server: LiveServer, image: bytes, **fields: str) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/analyze", files={"file": ("a.png", image)}, data={"samples": "2", **fields}, timeout=120)


def test_a_256_image_gets_flip_shares_and_the_flip_epsilon_map(server: LiveServer, tiny_bundle_dir: Path) -> None:
    response = post(server, random_png(SIZE, SIZE, seed=3), adversarial="true", adversarial_epsilons="1,2,4,8", seed="5")
    assert response.status_code == 200, response.text
    block = response.json()["adversarial"]
    assert block["epsilons"] == [1.0, 2.0, 4.0, 8.0] and block["steps"] == 3 and block["seed"] == 5
    assert [level["epsilon_text"] for level in block["levels"]] == ["1/255", "2/255", "4/255", "8/255"]
    index = png_array(block["flip_epsilon_png"])
    assert index.shape == (SIZE, SIZE) and set(np.unique(index)) <= {0, 1, 2, 3, NEVER_INDEX}
    assert block["never_flipped_share"] == pytest.approx(float((index == NEVER_INDEX).mean()))
    clean = png_array(block["clean_labels_png"])
    bundle = load_bundle(tiny_bundle_dir)
    norm = bundle.card.normalization
    log_probs = pixel_log_probs(bundle.net.eval(), norm.mean, norm.std)
    shares = []
    for k, level in enumerate(block["levels"]):
        assert level["flippable_share"] == pytest.approx(float((index <= k).mean()))  # the map's share at or below eps
        image = png_array(level["image"])
        labels = png_array(level["labels_png"])
        assert level["rounded_flip_share"] == pytest.approx(float((labels != clean).mean()))
        # the perturbed image is within eps of the input (PNG decoded, rounded to 8 bits) and its labels are its own prediction
        x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
        with torch.no_grad():
            assert np.array_equal(log_probs(x).argmax(1)[0].numpy(), labels)
        shares.append(level["flip_share"])
        assert level["flip_share"] <= level["flippable_share"] + 1e-9
    assert shares == sorted(shares)
    original = np.asarray(Image.open(io.BytesIO(random_png(SIZE, SIZE, seed=3))).convert("RGB")).astype(int)
    for level in block["levels"]:
        assert np.abs(png_array(level["image"]).astype(int) - original).max() <= np.ceil(level["epsilon"])


def test_off_by_default(server: LiveServer) -> None:
    response = post(server, random_png(32, 32))
    assert response.status_code == 200, response.text
    assert response.json()["adversarial"] is None


@pytest.mark.parametrize("radii", [" , ", "0,2", "1,x", "300", "2/100", "1,2,3,4,5,6,7,8,9"])
def test_bad_radii_are_422(server: LiveServer, radii: str) -> None:
    assert_error(post(server, random_png(32, 32), adversarial="true", adversarial_epsilons=radii), 422, "validation_error", "adversarial_epsilons")


def test_bad_steps_are_422(server: LiveServer) -> None:
    assert_error(post(server, random_png(32, 32), adversarial="true", adversarial_steps="99"), 422, "validation_error", "adversarial_steps")


def test_an_image_too_large_for_the_attack_is_413(server: LiveServer) -> None:
    error = assert_error(post(server, random_png(600, 600), adversarial="true", mode="sync"), 413, "too_much_work")
    assert ("adversarial" in error["message"] and "512" not in error["message"]) or "262,144" in error["message"]


def test_the_attack_counts_against_the_work_budget(server: LiveServer) -> None:
    image = random_png(500, 500)
    error = assert_error(post(server, image, adversarial="true", adversarial_steps="20", mode="sync"), 413, "too_much_work")
    assert "adversarial attack" in error["message"]


def test_the_npz_answer_carries_the_attack_arrays(server: LiveServer) -> None:
    response = post(server, random_png(32, 32), adversarial="true", adversarial_epsilons="2,4", format="npz")
    assert response.status_code == 200, response.text
    with np.load(io.BytesIO(response.content)) as z:
        assert z["flip_epsilon"].shape == (32, 32) and z["adversarial_epsilons"].tolist() == [2.0, 4.0]
        assert z["adversarial_images"].shape == (2, 32, 32, 3)


def test_the_default_model_answers_a_256_scene_with_the_map_and_shares(default_server: LiveServer) -> None:
    """The bar of issue 23 on the shipped model: a 256 x 256 test scene, radii 1, 2, 4, 8 /255."""
    from app.io.synthetic import make_scene

    buf = io.BytesIO()
    Image.fromarray(make_scene("test", 1, size=SIZE).image).save(buf, format="PNG")
    response = post(default_server, buf.getvalue(), adversarial="true", samples="4")
    assert response.status_code == 200, response.text
    block = response.json()["adversarial"]
    index = png_array(block["flip_epsilon_png"])
    assert index.shape == (SIZE, SIZE)
    shares = [level["flip_share"] for level in block["levels"]]
    assert [level["epsilon"] for level in block["levels"]] == [1.0, 2.0, 4.0, 8.0] and shares == sorted(shares)
    assert 0 < shares[1] < 1  # the default model is fooled on some pixels at 2/255, not all
