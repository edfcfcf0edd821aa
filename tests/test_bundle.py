"""Bundles on disk: weight round trips, card validation errors that name the field, weight mismatches."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_bundle, tiny_card
from PIL import Image
from safetensors import safe_open

from app.io.bundle import CARD_FILE, WEIGHTS_FILE, BundleError, build_network, load_bundle, read_card, save_bundle
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer


@pytest.fixture(scope="module")
def reference_state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A seeded tiny network's state dict, and an fp32 bundle made from it."""
    out = make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "ref", seed=5)
    with safe_open(str(out / WEIGHTS_FILE), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    return out, state


def _card_json(**changes: object) -> dict[str, object]:
    raw = tiny_card().model_dump(mode="json")
    raw.update(changes)
    return raw


def _write_card(tmp_path: Path, raw: object) -> Path:
    path = tmp_path / CARD_FILE
    path.write_text(json.dumps(raw))
    return path


def test_fp32_round_trip_is_exact(reference_state: tuple[Path, dict[str, torch.Tensor]]) -> None:
    """An fp32 bundle loads back every tensor bit for bit, in eval mode."""
    path, state = reference_state
    bundle = load_bundle(path)
    loaded = bundle.net.model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert not any(m.training for m in bundle.net.modules())
    assert bundle.class_names == ["bg", "a", "b"]
    assert bundle.card == tiny_card()


def test_fp16_round_trip_stores_half_and_loads_float(tmp_path: Path, reference_state: tuple[Path, dict[str, torch.Tensor]]) -> None:
    """half=True stores float16 on disk; loading gives float32 equal to the fp16-rounded weights; ints untouched."""
    _, state = reference_state
    net = build_network(tiny_card())
    net.model.load_state_dict(state)
    out = save_bundle(tiny_card(), net.model, tmp_path / "half", half=True)
    with safe_open(str(out / WEIGHTS_FILE), framework="pt") as f:
        dtypes = {k: f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118
    assert {dtypes[k] for k, v in state.items() if v.is_floating_point()} == {torch.float16}
    assert all(dtypes[k] == v.dtype for k, v in state.items() if not v.is_floating_point())
    loaded = load_bundle(out).net.model.state_dict()
    for k, v in state.items():
        expected = v.half().float() if v.is_floating_point() else v
        assert loaded[k].dtype == v.dtype, k
        assert torch.equal(loaded[k], expected), k
    assert any(not torch.equal(loaded[k], v) for k, v in state.items() if v.is_floating_point())


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"classes": [{"name": "bg", "colour": "#12"}, {"name": "a", "colour": "#ff0000"}, {"name": "b", "colour": "#00ff00"}]}, "classes.0.colour"),
        ({"classes": [{"name": "bg", "colour": "#000000"}, {"name": "a", "colour": "#ff0000"}]}, "architecture.classes is 3 but 2 classes"),
        ({"architecture": {"encoder_name": "mobilenet_v2", "classes": 3}}, "architecture"),
        ({"unexpected_key": 1}, "unexpected_key"),
        ({"temperature": 0}, "temperature"),
        ({"dropout": {"sites": ["head"], "rate": 1.0, "mode": "channel", "trained_with_dropout": True}}, "dropout.rate"),
        ({"dropout": {"sites": ["head"], "rate": 0.2, "mode": "spatial", "trained_with_dropout": True}}, "dropout.mode"),
        ({"normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.0, 0.2]}}, "normalization.std"),
    ],
)
def test_read_card_errors_name_the_field(tmp_path: Path, change: dict[str, object], needle: str) -> None:
    """Each invalid card is a BundleError naming the file and the bad field."""
    path = _write_card(tmp_path, _card_json(**change))
    with pytest.raises(BundleError) as info:
        read_card(path)
    assert needle in str(info.value)
    assert str(path) in str(info.value)


def test_valid_card_reads_and_normalises_colour(tmp_path: Path) -> None:
    """A valid card reads back equal to what was written; colours are lower-cased."""
    raw = _card_json(classes=[{"name": "bg", "colour": "#ABCDEF"}, {"name": "a", "colour": "#ff0000"}, {"name": "b", "colour": "#00ff00"}])
    card = read_card(_write_card(tmp_path, raw))
    assert card.classes[0].colour == "#abcdef"
    assert card.architecture == tiny_card().architecture


def test_invalid_json_and_missing_card(tmp_path: Path) -> None:
    """Broken JSON and an absent file are BundleErrors with a clear reason."""
    path = tmp_path / CARD_FILE
    path.write_text('{"name": "tiny", ')
    with pytest.raises(BundleError, match="not valid JSON"):
        read_card(path)
    with pytest.raises(BundleError, match="not found"):
        read_card(tmp_path / "nope.json")
    with pytest.raises(BundleError, match="no model bundle"):
        load_bundle(tmp_path / "missing-dir")


def test_missing_weights_file(tmp_path: Path) -> None:
    """A card without weights names the missing weights file."""
    _write_card(tmp_path, _card_json())
    with pytest.raises(BundleError, match=WEIGHTS_FILE):
        load_bundle(tmp_path)


def test_weights_of_another_architecture_rejected(tmp_path: Path, reference_state: tuple[Path, dict[str, torch.Tensor]]) -> None:
    """Weights for decoder_channels [16, 8, 8] do not load into a [16, 16, 8] card: BundleError naming the file."""
    src, _ = reference_state
    arch = {**tiny_card().architecture, "decoder_channels": [16, 16, 8]}
    _write_card(tmp_path, _card_json(architecture=arch))
    (tmp_path / WEIGHTS_FILE).write_bytes((src / WEIGHTS_FILE).read_bytes())
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path)
    assert str(tmp_path / WEIGHTS_FILE) in str(info.value)
    assert "does not match" in str(info.value)


def test_corrupt_weights_file_is_a_bundle_error(tmp_path: Path) -> None:
    """Bytes that are not safetensors give a BundleError naming the file, not a raw library error."""
    _write_card(tmp_path, _card_json())
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not a safetensors file at all" * 4)
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path)
    assert str(tmp_path / WEIGHTS_FILE) in str(info.value)


def test_bad_dropout_site_is_a_bundle_error(tmp_path: Path) -> None:
    """A dropout site naming no submodule is reported under dropout.sites."""
    _write_card(tmp_path, _card_json(dropout={"sites": ["decoder.nope"], "rate": 0.2, "mode": "channel", "trained_with_dropout": True}))
    with pytest.raises(BundleError, match=r"dropout\.sites.*decoder\.nope"):
        load_bundle(tmp_path)


def test_dropout_added_at_inference_is_reported(tmp_path: Path, reference_state: tuple[Path, dict[str, torch.Tensor]]) -> None:
    """trained_with_dropout=False loads, samples, and the analysis says dropout was added at inference."""
    src, _ = reference_state
    card = tiny_card(trained=False)
    (tmp_path / CARD_FILE).write_text(json.dumps(card.model_dump(mode="json")))
    (tmp_path / WEIGHTS_FILE).write_bytes((src / WEIGHTS_FILE).read_bytes())
    bundle = load_bundle(tmp_path)
    assert bundle.card.dropout.trained_with_dropout is False
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(buf, "PNG")
    analysis = Analyzer(bundle).analyze_bytes(buf.getvalue(), AnalysisRequest(samples=3))
    assert analysis.dropout_added_at_inference is True
    trained = Analyzer(load_bundle(src)).analyze_bytes(buf.getvalue(), AnalysisRequest(samples=3))
    assert trained.dropout_added_at_inference is False
