"""The shipped default model: its card, size and the mIoU bar, re-measured."""

from __future__ import annotations

import pytest

from app.bundle import MODELS_DIR, WEIGHTS_FILE, load_bundle
from app.train import evaluate_miou

DEFAULT = MODELS_DIR / "default"


def test_default_bundle_is_complete_and_small() -> None:
    bundle = load_bundle("default")
    card = bundle.card
    assert [c.name for c in card.classes] == ["background", "disc", "square", "triangle", "star"]
    assert card.architecture.get("encoder_weights") is None
    assert card.dropout.sites == ["head"] and card.dropout.trained_with_dropout
    assert {"command", "seed", "dataset", "metrics"} <= set(card.provenance)
    assert (DEFAULT / WEIGHTS_FILE).stat().st_size <= 10 * 2**20


@pytest.mark.slow
def test_default_model_reaches_the_miou_bar_it_records() -> None:
    recorded = load_bundle("default").card.provenance["metrics"]["test"]
    measured = evaluate_miou(DEFAULT, "test", recorded["images"], recorded["size"], recorded["data_seed"])
    assert measured["miou"] >= 0.85
    assert measured["miou"] == pytest.approx(recorded["miou"], abs=1e-3)
    assert measured["pixels"] == recorded["pixels"]
