"""The evaluate and calibrate commands and the streaming evaluator."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from app.cli import main
from app.io.bundle import load_bundle, read_card
from app.io.masks import DatasetError, pair_files, read_mask
from app.io.synthetic import write_split
from app.metrics.scoring import Evaluator
from app.workflows.analyzer import Analyzer


@pytest.fixture
def labelled(tmp_path: Path) -> tuple[Path, Path]:
    """Three 40x40 OOD scenes with 3-class masks (labels >= 3 folded to 2) and OOD pixels = 255."""
    images, masks = write_split("ood", 3, tmp_path / "data", size=40, seed=1)
    for path in masks.iterdir():
        with Image.open(path) as img:
            m = np.asarray(img).copy()
        m[(m >= 3) & (m != 255)] = 2
        Image.fromarray(m).save(path)
    return images, masks


def test_pairing_names_the_missing_mask(labelled: tuple[Path, Path]) -> None:
    images, masks = labelled
    (masks / "00001.png").unlink()
    with pytest.raises(DatasetError, match=r"00001\.png"):
        pair_files(images, masks)


def test_mask_size_mismatch_names_the_file(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(DatasetError, match=r"m\.png: mask is 7x5 but the image is 8x5"):
        read_mask(tmp_path / "m.png", (5, 8))


def test_evaluator_matches_direct_computation(labelled: tuple[Path, Path], tiny_bundle_dir: Path) -> None:
    images, masks = labelled
    analyzer = Analyzer(load_bundle(tiny_bundle_dir))
    ev = Evaluator(3, ignore_index=255, ood_label=255)
    preds, labels, mi = [], [], []
    for image, mask_path in pair_files(images, masks):
        analysis = analyzer.analyze_bytes(image.read_bytes(), samples=4, seed=0)
        mask = read_mask(mask_path, (40, 40))
        ev.add(analysis, mask)
        preds.append(analysis.prediction.ravel())
        labels.append(mask.ravel())
        mi.append(analysis.maps["mutual_information"].ravel())
    res = ev.result(["bg", "a", "b"])
    p, y, s = np.concatenate(preds), np.concatenate(labels), np.concatenate(mi)
    valid = y != 255
    assert res.segmentation.pixels == int(valid.sum())
    assert res.segmentation.pixel_accuracy == pytest.approx(float((p[valid] == y[valid]).mean()))
    wrong = p[valid] != y[valid]
    assert res.error_detection["mutual_information"].auroc == pytest.approx(roc_auc_score(wrong, s[valid]), abs=2e-3)
    assert res.ood_detection["mutual_information"].auroc == pytest.approx(roc_auc_score(y == 255, s), abs=2e-3)


def test_evaluate_and_calibrate_commands(labelled: tuple[Path, Path], tiny_bundle_dir: Path, tmp_path: Path) -> None:
    images, masks = labelled
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, bundle_dir)
    args = ["--images", str(images), "--masks", str(masks), "--model", str(bundle_dir), "--quiet"]
    assert main(["calibrate", *args]) == 0
    card = read_card(bundle_dir / "model.json")
    assert card.temperature != 1.0
    assert card.calibration is not None and card.calibration["nll_after"] < card.calibration["nll_before"]
    assert card.calibration["fitted_on"]["pixels"] == 3 * 40 * 40 - card.calibration["fitted_on"]["ignored_pixels"]
    out = tmp_path / "eval"
    assert main(["evaluate", *args, "--samples", "3", "--ood-label", "255", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["calibration"]) == {"softmax", "softmax_scaled", "mc_mean"}
    assert "15 equal-width bins" in metrics["calibration"]["softmax"]["binning"]
    assert set(metrics["ood_detection"]) == {"confidence", "entropy", "variance", "mutual_information"}
    assert "| mutual_information |" in (out / "report.md").read_text()
    with Image.open(out / "reliability.png") as img:
        assert img.size[0] > 200


def test_calibrated_analysis_keeps_the_prediction(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    bundle_dir = tmp_path / "b"
    shutil.copytree(tiny_bundle_dir, bundle_dir)
    raw = json.loads((bundle_dir / "model.json").read_text())
    raw["temperature"] = 2.5
    (bundle_dir / "model.json").write_text(json.dumps(raw))
    analyzer = Analyzer(load_bundle(bundle_dir))
    rgb = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    plain = analyzer.analyze_image(rgb, samples=0)
    scaled = analyzer.analyze_image(rgb, samples=0, calibrated=True)
    np.testing.assert_array_equal(plain.prediction, scaled.prediction)
    assert scaled.temperature == 2.5 and scaled.maps["confidence"].mean() < plain.maps["confidence"].mean()
    expected = torch.softmax(torch.log(torch.from_numpy(plain.probs)) / 2.5, 0).numpy()
    np.testing.assert_allclose(scaled.probs, expected, atol=1e-5)


def test_evaluate_reports_missing_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", "--images", str(tmp_path / "no"), "--masks", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
