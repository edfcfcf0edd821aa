"""Shared fixtures: a tiny real smp model saved as a bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.io.bundle import Bundle, ClassInfo, DropoutConfig, ModelCard, build_network, load_bundle, save_bundle

# The test models are tiny: one thread is fastest, and it avoids OpenMP oversubscription on shared CPUs.
torch.set_num_threads(1)

TINY_ARCH = {
    "arch": "unet",
    "encoder_name": "mobilenet_v2",
    "encoder_depth": 3,
    "decoder_channels": [16, 8, 8],
    "in_channels": 3,
    "classes": 3,
}


def tiny_card(sites: list[str] | None = None, rate: float = 0.3, mode: str = "channel", trained: bool = True) -> ModelCard:
    """A card for a 3-class tiny Unet with dropout at ``sites`` (default: before the head)."""
    return ModelCard(
        name="tiny",
        architecture=dict(TINY_ARCH),
        classes=[ClassInfo(name=n, colour=c) for n, c in (("bg", "#000000"), ("a", "#ff0000"), ("b", "#00ff00"))],
        dropout=DropoutConfig(sites=sites if sites is not None else ["head"], rate=rate, mode=mode, trained_with_dropout=trained),
    )


def second_card() -> ModelCard:
    """A second tiny model's card: 4 classes of other names and colours, a default of 6 MC samples."""
    classes = (("sky", "#0000ff"), ("road", "#808080"), ("car", "#ffff00"), ("person", "#ff00ff"))
    return ModelCard(
        name="second",
        architecture={**TINY_ARCH, "classes": len(classes)},
        classes=[ClassInfo(name=n, colour=c) for n, c in classes],
        dropout=DropoutConfig(sites=["head"], rate=0.3),
        default_samples=6,
    )


def make_tiny_bundle(out: Path, sites: list[str] | None = None, mode: str = "channel", seed: int = 0, card: ModelCard | None = None) -> Path:
    """Build a seeded tiny model (of ``card``, default :func:`tiny_card`) with non-trivial BatchNorm statistics and save it as a bundle."""
    torch.manual_seed(seed)
    card = card if card is not None else tiny_card(sites, mode=mode)
    net = build_network(card)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        for p in net.model.get_submodule("segmentation_head").parameters():
            p.mul_(20.0)
    save_bundle(card, net.model, out, half=False)
    return out


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bundle with channel dropout before the head."""
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture(scope="session")
def second_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny bundle (:func:`second_card`), with other weights, to serve beside :func:`tiny_bundle_dir`."""
    return make_tiny_bundle(tmp_path_factory.mktemp("second") / "second", seed=1, card=second_card())


@pytest.fixture
def tiny_bundle(tiny_bundle_dir: Path) -> Bundle:
    """A freshly loaded tiny bundle (each test gets its own copy)."""
    return load_bundle(tiny_bundle_dir)
