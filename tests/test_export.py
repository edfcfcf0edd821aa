"""Bringing your own smp model: export a model object or a state-dict file to a bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
from conftest import TINY_ARCH, tiny_card
from safetensors.torch import save_file

from app.cli import main
from app.io.bundle import BundleError, load_bundle
from app.io.export import export_model, export_state_dict_file


def _user_model(seed: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return smp.create_model(**TINY_ARCH, encoder_weights=None).eval()


def test_exported_bundle_reproduces_the_users_model(tmp_path: Path) -> None:
    model = _user_model()
    card = tiny_card(trained=False)
    export_model(model, card, tmp_path / "b")
    bundle = load_bundle(tmp_path / "b")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(bundle.net(x), model(x))
    assert bundle.card.dropout.trained_with_dropout is False


def test_export_refuses_a_model_that_does_not_match_the_card(tmp_path: Path) -> None:
    other = smp.create_model(**{**TINY_ARCH, "classes": 4}, encoder_weights=None)
    with pytest.raises(BundleError, match="do not match"):
        export_model(other, tiny_card(), tmp_path / "b")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_cli_export_from_state_dict_file(tmp_path: Path, suffix: str) -> None:
    model = _user_model(5)
    weights = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if suffix == ".pt":
        torch.save(state, weights)
    else:
        save_file(state, str(weights))
    card_path = tmp_path / "card.json"
    card_path.write_text(json.dumps(tiny_card().model_dump(mode="json")))
    assert main(["export", str(weights), "--card", str(card_path), "--out", str(tmp_path / "bundle")]) == 0
    bundle = load_bundle(tmp_path / "bundle")
    for key, value in state.items():
        torch.testing.assert_close(bundle.net.model.state_dict()[key], value)


def test_cli_export_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card_path = tmp_path / "card.json"
    card_path.write_text(json.dumps(tiny_card().model_dump(mode="json")))
    (tmp_path / "w.bin").write_bytes(b"garbage")
    assert main(["export", str(tmp_path / "w.bin"), "--card", str(card_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a plain state dict" in capsys.readouterr().err
    with pytest.raises(BundleError, match="not found"):
        export_state_dict_file(tmp_path / "missing.safetensors", card_path, tmp_path / "o")
