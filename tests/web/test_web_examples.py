"""The shipped models served together (what ``make run`` serves): the person model's card defaults (test-time augmentation,
inserted dropout labelled a heuristic) in the API and the page, and the page's row of example images."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from webutil import LiveServer, open_page, wait_ready, web_settings

from app.io.card import INSERTED_DROPOUT_NOTE, TRAINED_DROPOUT_NOTE
from app.web.examples import EXAMPLES, served_examples

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = [str(MODELS / "default"), str(MODELS / "person")]


def shipped_settings() -> Any:
    return web_settings(MODELS / "default", models=SHIPPED, default_samples=2, max_samples=8, max_body_bytes=2**22, max_pixels=2**20)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    from app.web.factory import create_app

    with TestClient(create_app(shipped_settings())) as c:
        wait_ready(c)
        yield c


def example_bytes(name: str) -> bytes:
    return (Path(__file__).resolve().parents[2] / "static" / "examples" / name).read_bytes()


def test_models_report_their_default_tta_and_what_their_dropout_is(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/api/v1/models").json()["models"]}
    assert (models["default"]["default_tta"], models["person"]["default_tta"]) == ("none", "flips")
    assert models["person"]["dropout"]["trained_with_dropout"] is False
    assert models["person"]["dropout_note"] == INSERTED_DROPOUT_NOTE == "inserted after training: a heuristic, not a posterior"
    assert models["default"]["dropout_note"] == TRAINED_DROPOUT_NOTE


def test_a_request_without_tta_gets_the_models_default(client: TestClient) -> None:
    cat = example_bytes("cat.jpg")
    omitted = client.post("/api/v1/analyze", files={"file": ("cat.jpg", cat)}, data={"model": "person", "samples": "0"}).json()
    assert (omitted["tta"], omitted["passes"]) == ("flips", 4), "person's card: default_tta flips"
    assert omitted["dropout_added_at_inference"] is True and omitted["dropout_note"] == INSERTED_DROPOUT_NOTE
    given = client.post("/api/v1/analyze", files={"file": ("cat.jpg", cat)}, data={"model": "person", "samples": "0", "tta": "none"}).json()
    assert (given["tta"], given["passes"]) == ("none", 1), "a request's own tta wins"
    synthetic = client.post("/api/v1/analyze", files={"file": ("s.png", example_bytes("synthetic_scene.png"))}, data={"samples": "0"}).json()
    assert (synthetic["model"], synthetic["tta"], synthetic["passes"]) == ("default", "none", 1)
    assert synthetic["dropout_note"] == TRAINED_DROPOUT_NOTE


def test_the_page_offers_the_examples_with_their_models_and_labels_inserted_dropout(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    buttons = re.findall(r'<button type="button" class="example" data-src="([^"]+)" data-file="([^"]+)" data-model="([^"]+)"', page.text)
    assert buttons == [(e.url, e.file, e.model) for e in EXAMPLES]
    assert [m for _, _, m in buttons] == ["default", "person", "person", "person"]
    config = page.context["config"]  # type: ignore[attr-defined]
    person = next(m for m in config["models"] if m["name"] == "person")
    assert person["defaultTta"] == "flips" and person["dropout"]["note"] == INSERTED_DROPOUT_NOTE
    assert re.search(r'<option value="none" selected>none</option>', page.text), "the default model (synthetic) preselects no TTA"
    for _, name, _ in buttons:
        served = client.get(f"/static/examples/{name}")
        assert served.status_code == 200 and served.content == example_bytes(name)
        assert Image.open(io.BytesIO(served.content)).mode == "RGB"


def test_examples_are_only_offered_for_served_models() -> None:
    assert [e.file for e in served_examples(["default"])] == ["synthetic_scene.png"]
    assert [e.file for e in served_examples(["person"])] == ["astronaut.jpg", "cat.jpg", "coffee.jpg"]
    assert served_examples(["tiny"]) == []


@pytest.fixture(scope="module")
def shipped_server() -> Iterator[LiveServer]:
    server = LiveServer(shipped_settings()).start()
    yield server
    server.stop()


@pytest.mark.browser
def test_clicking_the_cat_analyses_it_with_the_person_model(browser: Any, shipped_server: LiveServer) -> None:
    for page in open_page(browser, shipped_server.url):
        assert page.input_value("#model") == "default" and page.input_value("#tta") == "none"
        with page.expect_response(lambda r: r.url.endswith("/api/v1/analyze")) as answer:
            page.click('#examples button[data-file="cat.jpg"]')
        result = answer.value.json()
        assert (result["model"], result["tta"]) == ("person", "flips"), "the cat's model chosen, its card's TTA preselected"
        assert page.input_value("#model") == "person" and page.input_value("#tta") == "flips"
        drawn = "() => document.body.dataset.state === 'ready' && document.querySelector('#panel-prediction canvas[data-drawn=\"1\"]')"
        page.wait_for_function(drawn, timeout=60_000)
        prediction = page.evaluate(
            """() => { const c = document.querySelector('#panel-prediction canvas');
                       const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                       let opaque = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) opaque++;
                       return {w: c.width, h: c.height, opaque}; }"""
        )
        assert (prediction["w"], prediction["h"]) == (result["width"], result["height"]) and prediction["opaque"] == prediction["w"] * prediction["h"]
        assert "MC dropout" not in page.text_content("#model-dropout") or INSERTED_DROPOUT_NOTE in page.text_content("#model-dropout")
        view = page.locator("#panel-prediction .view")
        box = view.bounding_box()
        view.hover(position={"x": 0.5 * box["width"], "y": 0.5 * box["height"]})
        page.wait_for_function("() => document.querySelectorAll('#readout-top li').length > 0")
        top = page.evaluate("() => [...document.querySelectorAll('#readout-top li')].map((li) => li.dataset.class)")
        assert top[0] == "person", f"the person model calls the cat's middle 'person': {top}"
        assert "person" in page.text_content("#readout")
        thumbs = page.evaluate("() => [...document.querySelectorAll('#thumbs .name')].map((n) => n.textContent)")
        assert thumbs == ["cat.jpg"]
        assert np.isclose(sum(result["class_shares"].values()), 1.0)
