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


def test_calibrate_fits_the_sets_for_the_augmentation_asked(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """``sets_tta="flips"``: the card's sets are of flipped analyses, so a flipped analysis gets the guarantee and a plain one
    is told it is approximate; the temperature is fitted on the plain analyses as without it."""
    import shutil

    from app.io.bundle import load_bundle
    from app.workflows.calibrate import calibrate_bundle

    plain = load_bundle(shutil.copytree(tiny_bundle_dir, tmp_path / "plain"))
    flipped = load_bundle(shutil.copytree(tiny_bundle_dir, tmp_path / "flipped"))
    (tmp_path / "data").mkdir()
    pairs = _pairs(tmp_path / "data")
    fit_plain = calibrate_bundle(Analyzer(plain), pairs, images=tmp_path, masks=tmp_path, samples=2, seed=1)
    fit_flipped = calibrate_bundle(Analyzer(flipped), pairs, images=tmp_path, masks=tmp_path, samples=2, seed=1, sets_tta="flips")
    assert fit_plain.temperature == fit_flipped.temperature
    assert plain.card.conformal_sets is not None and flipped.card.conformal_sets is not None
    assert plain.card.conformal_sets.analysis_method == "mc_dropout"
    assert flipped.card.conformal_sets.analysis_method.startswith("tta:flips")
    rgb = make_scene("test", 9, size=64).image
    assert Analyzer(flipped).analyze_image(rgb, AnalysisRequest(samples=2, tta="flips")).sets.approximate == ""  # type: ignore[union-attr]
    assert "this analysis is mc_dropout" in Analyzer(flipped).analyze_image(rgb, AnalysisRequest(samples=2)).sets.approximate  # type: ignore[union-attr]
