"""The server on a user's own models: an smp save_pretrained folder as SEGU_MODEL, and a torchvision bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file
from torchvision.models import segmentation
from webutil import random_png, wait_ready, web_settings

from app.io.bundle import CARD_FILE, WEIGHTS_FILE
from app.web.factory import create_app


def _serve_and_analyze(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model the server reports and one analysis of a 40×56 PNG."""
    with TestClient(create_app(web_settings(folder)), base_url="http://localhost") as client:
        wait_ready(client)
        model = client.get("/api/v1/models").json()["models"][0]
        response = client.post("/api/v1/analyze", files={"file": ("a.png", random_png(40, 56))}, data={"samples": "3"})
        assert response.status_code == 200, response.text
        return model, response.json()


def test_smp_save_pretrained_folder_served_directly(tmp_path: Path) -> None:
    """SEGU_MODEL=<smp folder>: loads without a card and the API says what was assumed."""
    torch.manual_seed(0)
    smp.Unet("mobilenet_v2", encoder_depth=3, encoder_weights=None, decoder_channels=[16, 8, 8], classes=3).save_pretrained(tmp_path / "mine")
    model, analysis = _serve_and_analyze(tmp_path / "mine")
    assert [c["name"] for c in model["classes"]] == ["class 0", "class 1", "class 2"]
    assert [n.split(":")[0] for n in model["provenance"]["assumed"]] == ["classes", "normalization", "dropout", "input.working_size"]
    assert analysis["width"] == 56 and analysis["dropout_added_at_inference"] is True


def test_torchvision_bundle_served(tmp_path: Path) -> None:
    """A DeepLabV3 card + safetensors: its own trained dropout is sampled, images of any size come back at their size."""
    torch.manual_seed(0)
    net = segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=2).eval()
    folder = tmp_path / "deeplab"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / WEIGHTS_FILE))
    card = {
        "name": "deeplab",
        "architecture": {"arch": "torchvision.models.segmentation.deeplabv3_mobilenet_v3_large", "classes": 2},
        "classes": [{"name": "bg", "colour": "#000000"}, {"name": "fg", "colour": "#ffffff"}],
    }
    (folder / CARD_FILE).write_text(json.dumps(card))
    model, analysis = _serve_and_analyze(folder)
    assert model["dropout"] == {"sites": ["classifier.0.project.3"], "rate": 0.5, "mode": "element", "trained_with_dropout": True}
    assert analysis["width"] == 56 and analysis["height"] == 40 and analysis["dropout_added_at_inference"] is False
