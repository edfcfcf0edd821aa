"""``evaluate`` reports how the card's prediction sets cover the user's labelled images: per level, the mean over images of
the share of scored pixels outside their set, against a brute-force count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.io.bundle import Bundle
from app.io.card import ConformalLevel, ConformalSets
from app.io.synthetic import make_scene
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.evaluate_folder import evaluate_pairs, write_evaluation

THRESHOLDS = {0.05: 0.3, 0.1: 0.6}


def _pairs(folder: Path, count: int = 5) -> list[tuple[Path, Path]]:
    pairs = []
    for k in range(count):
        scene = make_scene("test", 30 + k, size=64)
        mask = np.minimum(scene.mask, 2).astype(np.uint8)  # the tiny model has 3 classes
        mask[:4] = 255
        image, labels = folder / f"{k}.png", folder / f"{k}_mask.png"
        Image.fromarray(scene.image).save(image)
        Image.fromarray(mask).save(labels)
        pairs.append((image, labels))
    return pairs


def test_evaluate_reports_the_sets_coverage_per_level(tiny_bundle: Bundle, tmp_path: Path) -> None:
    tiny_bundle.card.conformal_sets = ConformalSets(
        method="test",
        score="test",
        analysis_method="mc_dropout",
        samples=3,
        calibrated_on="test",
        images=10,
        levels=[ConformalLevel(alpha=a, threshold=t, calibration_risk=a) for a, t in THRESHOLDS.items()],
    )
    analyzer = Analyzer(tiny_bundle)
    pairs = _pairs(tmp_path)
    request = AnalysisRequest(samples=3, seed=4)
    evaluation = evaluate_pairs(analyzer, pairs, request, ignore_index=255)
    assert evaluation.conformal is not None
    from app.engine.dropout_masks import image_seed

    for alpha, t in THRESHOLDS.items():
        misses, sizes = [], []
        for image, labels in pairs:
            seeded = AnalysisRequest(samples=3, seed=image_seed(4, image.name))
            probs = analyzer.analyze_bytes(image.read_bytes(), seeded).mean_probs
            mask = np.asarray(Image.open(labels))
            valid = mask < 3
            p_true = np.take_along_axis(probs, np.minimum(mask, 2)[None].astype(np.int64), axis=0)[0]
            misses.append((p_true[valid] < t).mean())
            sizes.append((probs >= t).sum(axis=0)[valid].mean())
        level = evaluation.conformal[f"{alpha:g}"]
        assert level["images"] == len(pairs) and level["threshold"] == t
        assert level["miss_share"] == pytest.approx(np.mean(misses))
        assert level["mean_set_size"] == pytest.approx(np.mean(sizes))
    report = write_evaluation(evaluation, tmp_path / "out")
    assert "Conformal prediction sets on these images" in report
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["conformal"]["0.1"]["images"] == len(pairs)


def test_a_model_without_sets_reports_none(tiny_bundle: Bundle, tmp_path: Path) -> None:
    tiny_bundle.card.conformal_sets = None
    evaluation = evaluate_pairs(Analyzer(tiny_bundle), _pairs(tmp_path, 2), AnalysisRequest(samples=2), ignore_index=255)
    assert evaluation.conformal is None
    assert "Conformal" not in write_evaluation(evaluation, tmp_path / "out")
