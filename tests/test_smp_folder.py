"""smp's own save format both ways: ``save_pretrained`` folders load as models here, our bundles load in smp."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
from conftest import TINY_ARCH, make_tiny_bundle

from app.cli import main
from app.engine.device import place
from app.io.bundle import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, BundleError, load_bundle
from app.io.resources import models_dir


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection (a weights download) fails at once."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _saved(folder: Path, seed: int = 3, **config_changes: object) -> torch.nn.Module:
    """A seeded tiny Unet saved with smp's ``save_pretrained``; ``config_changes`` are then written into its config.json."""
    torch.manual_seed(seed)
    model = smp.create_model(**TINY_ARCH, encoder_weights=None).eval()
    with torch.no_grad():
        for p in model.segmentation_head.parameters():
            p.mul_(10.0)
    model.save_pretrained(folder)
    if config_changes:
        config = json.loads((folder / CONFIG_FILE).read_text())
        (folder / CONFIG_FILE).write_text(json.dumps({**config, **config_changes}))
    return model


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(seed))


def test_save_pretrained_folder_loads_without_a_card(tmp_path: Path, no_network: None, caplog: pytest.LogCaptureFixture) -> None:
    """config.json (imagenet encoder_weights, as smp documents) + model.safetensors: same logits, every default reported."""
    model = _saved(tmp_path / "mine", encoder_weights="imagenet")
    with caplog.at_level(logging.WARNING, logger="app.io.bundle"):
        bundle = load_bundle(tmp_path / "mine")
    with torch.inference_mode():
        assert torch.equal(bundle.net(_x()), place(model, "cpu")(_x()))
    card = bundle.card
    assert card.architecture["arch"] == "unet" and card.architecture["encoder_name"] == "mobilenet_v2"
    assert bundle.class_names == ["class 0", "class 1", "class 2"]
    assert len({c.colour for c in card.classes}) == 3
    assert card.name == "mine"
    assert card.dropout.sites == ["head"] and card.dropout.trained_with_dropout is False
    assert card.input.working_size is None
    topics = [note.split(":")[0] for note in bundle.notes]
    assert topics == ["classes", "normalization", "dropout", "input.working_size", "architecture.encoder_weights='imagenet' ignored"]
    assert "seg-uncertainty export --help" in bundle.notes[0]
    assert card.provenance["assumed"] == bundle.notes
    assert [r.getMessage() for r in caplog.records] == [f"{tmp_path / 'mine'}: {note}" for note in bundle.notes]


def test_card_beside_the_folder_gives_names_and_keeps_download_keys_ignored(tmp_path: Path, no_network: None) -> None:
    """A card with only classes (no architecture) beside config.json: names used, nothing downloaded, fewer notes."""
    folder = tmp_path / "mine"
    model = _saved(folder, encoder_weights="imagenet")
    classes = [{"name": n, "colour": "#102030"} for n in ("sky", "road", "car")]
    (folder / CARD_FILE).write_text(json.dumps({"name": "roads", "classes": classes, "dropout": {"rate": 0.1}}))
    bundle = load_bundle(folder)
    assert bundle.class_names == ["sky", "road", "car"] and bundle.card.name == "roads"
    assert bundle.card.dropout.rate == 0.1 and bundle.card.dropout.trained_with_dropout is True
    assert [note.split(":")[0] for note in bundle.notes] == ["normalization", "input.working_size", "architecture.encoder_weights='imagenet' ignored"]
    with torch.inference_mode():
        assert torch.equal(bundle.net(_x(1)), place(model, "cpu")(_x(1)))


def test_card_copied_from_smp_config_with_imagenet_weights_is_accepted(tmp_path: Path, no_network: None) -> None:
    """A full card whose architecture says encoder_weights: "imagenet" loads (the key is never used)."""
    folder = make_tiny_bundle(tmp_path / "b", seed=2)
    card = json.loads((folder / CARD_FILE).read_text())
    card["architecture"]["encoder_weights"] = "imagenet"
    (folder / CARD_FILE).write_text(json.dumps(card))
    bundle = load_bundle(folder)
    assert bundle.card.architecture["encoder_weights"] == "imagenet"
    assert bundle.notes == ["architecture.encoder_weights='imagenet' ignored: weights come from model.safetensors, nothing is downloaded"]


@pytest.mark.parametrize("which", ["tiny fp32", "default fp16"])
def test_smp_from_pretrained_reads_our_bundles(tmp_path: Path, which: str) -> None:
    """Our bundles carry smp's config.json: smp.from_pretrained gives the very logits our loader does."""
    folder = make_tiny_bundle(tmp_path / "b", seed=4) if which == "tiny fp32" else models_dir() / "default"
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["_model_class"] == "Unet" and config["encoder_weights"] is None
    theirs = smp.from_pretrained(str(folder)).eval()
    ours = load_bundle(folder)
    x = _x(2)
    with torch.inference_mode():
        assert torch.equal(place(theirs, "cpu")(x), ours.net(x))
    assert ours.notes == []


def test_card_and_config_that_disagree_are_refused(tmp_path: Path) -> None:
    """A config.json of another architecture beside a card is an error naming the key."""
    folder = make_tiny_bundle(tmp_path / "b")
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "encoder_depth": 4}))
    with pytest.raises(BundleError, match=r"model\.json and config\.json disagree on architecture encoder_depth"):
        load_bundle(folder)


def test_neither_format_says_what_it_looked_for_once_and_how_to_make_a_card(tmp_path: Path) -> None:
    """An existing folder with only weights, a missing folder, and a file: each message names the path once."""
    empty = tmp_path / "weights_only"
    empty.mkdir()
    (empty / WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(BundleError) as info:
        load_bundle(empty)
    message = str(info.value)
    assert message.count(str(empty)) == 1
    assert CARD_FILE in message and CONFIG_FILE in message and "seg-uncertainty export --help" in message
    missing = tmp_path / "nowhere"
    with pytest.raises(BundleError) as info:
        load_bundle(missing)
    assert str(info.value).count(str(missing)) == 1 and "no folder" in str(info.value)
    with pytest.raises(BundleError, match=r"is a file; --model takes a folder.*seg-uncertainty export --help"):
        load_bundle(empty / WEIGHTS_FILE)


def test_relative_name_looks_in_models_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative name that is nowhere lists both places it looked."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BundleError) as info:
        load_bundle("nope")
    assert f"no folder nope or {models_dir() / 'nope'};" in str(info.value)


def test_cli_export_writes_a_card_beside_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """export DIR --classes … --out DIR writes only model.json; the folder then loads with those names and no new notes."""
    folder = tmp_path / "mine"
    model = _saved(folder)
    weights_before = (folder / WEIGHTS_FILE).read_bytes()
    config_before = (folder / CONFIG_FILE).read_text()
    assert main(["export", str(folder), "--classes", "sky,road,car", "--out", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "assumed: normalization" in err and "assumed: classes" not in err
    assert (folder / WEIGHTS_FILE).read_bytes() == weights_before and (folder / CONFIG_FILE).read_text() == config_before
    bundle = load_bundle(folder)
    assert bundle.class_names == ["sky", "road", "car"] and bundle.notes == []
    assert bundle.card.dropout.trained_with_dropout is False
    assert [n.split(":")[0] for n in bundle.card.provenance["assumed"]] == ["normalization", "dropout", "input.working_size"]
    with torch.inference_mode():
        assert torch.equal(bundle.net(_x(3)), place(model, "cpu")(_x(3)))


def test_cli_export_folder_to_a_new_bundle(tmp_path: Path) -> None:
    """export DIR --out OTHER writes card, weights and config.json; both loaders agree on it."""
    _saved(tmp_path / "mine")
    assert main(["export", str(tmp_path / "mine"), "--out", str(tmp_path / "bundle"), "--name", "roads"]) == 0
    assert {p.name for p in (tmp_path / "bundle").iterdir()} == {CARD_FILE, CONFIG_FILE, WEIGHTS_FILE}
    ours = load_bundle(tmp_path / "bundle")
    assert ours.card.name == "roads" and ours.class_names == ["class 0", "class 1", "class 2"]
    with torch.inference_mode():
        assert torch.equal(place(smp.from_pretrained(str(tmp_path / "bundle")).eval(), "cpu")(_x(4)), ours.net(_x(4)))
