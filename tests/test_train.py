"""The training script: a tiny run is reproducible from its seed and writes a loadable, scored bundle."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from app.defaults import IGNORE_INDEX
from app.io.bundle import load_bundle
from app.io.synthetic import iter_split
from app.workflows.train import TrainConfig, evaluate_miou, train

TINY = TrainConfig(steps=3, batch=4, size=32, train_images=8, test_images=4, decoder_channels=(16, 8, 8), threads=1)


def _run(out: Path, seed: int) -> dict[str, torch.Tensor]:
    train(replace(TINY, out=out, seed=seed))
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
    assert test["split"] == "test" and test["size"] == 32 and test["data_seed"] == 3
    remeasured = evaluate_miou(tmp_path / "m", "test", 4, 32, 3)
    assert remeasured["miou"] == test["miou"] and remeasured["pixels"] == test["pixels"]
    assert test["miou"] == pytest.approx(_plain_miou(tmp_path / "m", 4, 32, 3), abs=1e-12)


def _plain_miou(bundle_dir: Path, count: int, size: int, seed: int) -> float:
    """mIoU of the saved weights' argmax on the test split, counted here with NumPy (IoU over classes seen)."""
    bundle = load_bundle(bundle_dir)
    norm = bundle.card.normalization
    classes = len(bundle.card.classes)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    for scene in iter_split("test", count, size=size, seed=seed):
        x = (torch.from_numpy(scene.image).permute(2, 0, 1).float() / 255.0 - torch.tensor(norm.mean).view(3, 1, 1)) / torch.tensor(norm.std).view(3, 1, 1)
        with torch.no_grad():
            pred = bundle.net.model(x.unsqueeze(0))[0].argmax(0).numpy().ravel()
        label = scene.mask.astype(np.int64).ravel()
        keep = label != IGNORE_INDEX
        np.add.at(confusion, (label[keep], pred[keep]), 1)
    inter = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    return float((inter[union > 0] / union[union > 0]).mean())
