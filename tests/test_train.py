"""The training script: a tiny run is reproducible from its seed and writes a loadable, scored bundle."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from app.io.bundle import load_bundle
from app.workflows.train import TrainConfig, train

TINY = {"steps": 3, "batch": 4, "size": 32, "train_images": 8, "test_images": 4, "decoder_channels": (16, 8, 8), "threads": 1}


def _run(out: Path, seed: int) -> dict[str, torch.Tensor]:
    train(TrainConfig(**TINY, out=out, seed=seed))
    return load_file(str(out / "model.safetensors"))


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path) -> None:
    a, b, c = _run(tmp_path / "a", 0), _run(tmp_path / "b", 0), _run(tmp_path / "c", 1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_bundle_records_provenance_and_its_score(tmp_path: Path) -> None:
    _run(tmp_path / "m", 3)
    card = load_bundle(tmp_path / "m").card
    assert card.dropout.sites == ["head"] and card.dropout.trained_with_dropout
    assert card.provenance["seed"] == 3 and card.provenance["steps"] == 3
    test = card.provenance["metrics"]["test"]
    assert test["images"] == 4 and test["pixels"] == 4 * 32 * 32
    assert 0.0 <= test["miou"] <= 1.0
