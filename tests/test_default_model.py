"""The shipped default model: its card, size and the mIoU bar, re-measured."""

from __future__ import annotations

import pytest

from app.engine.dropout_masks import image_seed
from app.io.bundle import WEIGHTS_FILE, load_bundle
from app.io.resources import models_dir
from app.io.synthetic import IGNORE_INDEX, iter_split
from app.metrics.scoring import Evaluator
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.train import evaluate_miou

DEFAULT = models_dir() / "default"


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
    miou = measured["miou"]
    assert isinstance(miou, float)
    assert miou >= 0.85
    assert miou == pytest.approx(recorded["miou"], abs=1e-3)
    assert measured["pixels"] == recorded["pixels"]


@pytest.mark.slow
def test_mutual_information_flags_ood_pixels_better_than_softmax_confidence() -> None:
    bundle = load_bundle("default")
    analyzer = Analyzer(bundle)
    evaluator = Evaluator(len(bundle.card.classes), ignore_index=IGNORE_INDEX, ood_label=IGNORE_INDEX)
    for index, scene in enumerate(iter_split("ood", 40, size=128, seed=7)):  # each image its own masks, as evaluate does
        evaluator.add(analyzer.analyze_image(scene.image, AnalysisRequest(samples=20, seed=image_seed(0, f"{index:05d}.png"))), scene.mask)
    ood = evaluator.result(bundle.class_names).ood_detection
    assert ood is not None
    mutual_information, variance, confidence = (ood[name].auroc for name in ("mutual_information", "variance", "confidence"))
    assert mutual_information is not None and variance is not None and confidence is not None
    assert mutual_information - confidence >= 0.05
    assert variance > confidence
