"""The evaluate and calibrate commands and the streaming evaluator."""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from app.cli import main
from app.engine.dropout_masks import image_seed
from app.io.bundle import load_bundle, read_card
from app.io.masks import DatasetError, pair_files, read_mask
from app.io.resources import models_dir
from app.io.synthetic import write_split
from app.metrics.scoring import Evaluator
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.evaluate_folder import evaluate_pairs


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
        analysis = analyzer.analyze_bytes(image.read_bytes(), AnalysisRequest(samples=4, seed=0))
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
    assert res.error_detection["mutual_information"].auroc == pytest.approx(roc_auc_score(wrong, s[valid]), abs=1e-9)
    assert res.ood_detection is not None
    assert res.ood_detection["mutual_information"].auroc == pytest.approx(roc_auc_score(y == 255, s), abs=1e-9)


def _metrics_with_seeds(analyzer: Analyzer, pairs: list[tuple[Path, Path]], seeds: list[int]) -> dict[str, object]:
    ev = Evaluator(3, ignore_index=255, ood_label=255)
    for (image, mask_path), seed in zip(pairs, seeds, strict=True):
        ev.add(analyzer.analyze_bytes(image.read_bytes(), AnalysisRequest(samples=3, seed=seed)), read_mask(mask_path, (40, 40)))
    return asdict(ev.result(["bg", "a", "b"]))


def test_each_image_gets_its_own_seed_from_the_run_seed(labelled: tuple[Path, Path], tiny_bundle_dir: Path) -> None:
    """Seeds are image_seed(run seed, file name): reproducible, distinct per image, and not one seed for all."""
    images, masks = labelled
    analyzer = Analyzer(load_bundle(tiny_bundle_dir))
    pairs = pair_files(images, masks)
    first = evaluate_pairs(analyzer, pairs, AnalysisRequest(samples=3, seed=4), ood_label=255)
    again = evaluate_pairs(analyzer, pairs, AnalysisRequest(samples=3, seed=4), ood_label=255)
    other = evaluate_pairs(analyzer, pairs, AnalysisRequest(samples=3, seed=5), ood_label=255)
    assert asdict(first.metrics) == asdict(again.metrics)
    assert first.image_seeds == {image.name: image_seed(4, image.name) for image, _ in pairs}
    assert len(set(first.image_seeds.values())) == len(pairs) == 3
    assert set(first.image_seeds.values()).isdisjoint(other.image_seeds.values())
    assert asdict(first.metrics) == _metrics_with_seeds(analyzer, pairs, list(first.image_seeds.values()))
    assert asdict(first.metrics) != _metrics_with_seeds(analyzer, pairs, [4, 4, 4])
    assert asdict(first.metrics) != asdict(other.metrics)
    assert first.to_json()["image_seeds"] == first.image_seeds


def test_ood_label_that_is_a_class_is_refused_like_the_api(labelled: tuple[Path, Path], tiny_bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``evaluate --ood-label 1`` exits 2 with the API's message; the library raises ValueError before analysing."""
    images, masks = labelled
    out = images.parent / "o"
    code = main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(tiny_bundle_dir), "--out", str(out), "--ood-label", "1", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "ood_label: 1 is a class of the model (0 to 2); use a mask value no class uses, e.g. 255" in err
    assert not out.exists()
    with pytest.raises(ValueError, match="is a class of the model"):
        evaluate_pairs(Analyzer(load_bundle(tiny_bundle_dir)), pair_files(images, masks), ood_label=0)


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
    plain = analyzer.analyze_image(rgb, AnalysisRequest(samples=0))
    scaled = analyzer.analyze_image(rgb, AnalysisRequest(samples=0, calibrated=True))
    np.testing.assert_array_equal(plain.prediction, scaled.prediction)
    assert scaled.temperature == 2.5 and scaled.maps["confidence"].mean() < plain.maps["confidence"].mean()
    expected = torch.softmax(torch.log(torch.from_numpy(plain.probs)) / 2.5, 0).numpy()
    np.testing.assert_allclose(scaled.probs, expected, atol=1e-5)


def test_evaluate_reports_missing_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", "--images", str(tmp_path / "no"), "--masks", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def _trust_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trust_table", Path(__file__).resolve().parents[1] / "scripts" / "trust_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trust_table_reports_spread_over_run_seeds_and_writes_the_bundle_only_when_asked(tmp_path: Path) -> None:
    """Default: calibrates a copy under --out (the bundle's model.json is byte-for-byte unchanged); --write writes it."""
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(models_dir() / "default", bundle_dir)
    before = (bundle_dir / "model.json").read_bytes()
    script = _trust_table()
    args = ["--model", str(bundle_dir), "--count", "2", "--size", "32", "--samples", "3", "--seeds", "0", "1", "--out", str(tmp_path / "run")]
    assert script.main(args) == 0
    assert (bundle_dir / "model.json").read_bytes() == before
    assert read_card(tmp_path / "run" / "model" / "model.json").calibration is not None
    text = (tmp_path / "run" / "table.md").read_text()
    assert "Run seeds 0, 1" in text and " ± " in text and "mutual information − confidence" in text
    assert {p.name for p in (tmp_path / "run").glob("seed-*")} == {"seed-0", "seed-1"}
    assert script.main([*args, "--write"]) == 0
    assert (bundle_dir / "model.json").read_bytes() != before


def test_trust_table_cells() -> None:
    """A value that does not vary is printed once; one that does as mean ± sd (min–max); undefined as a dash."""
    script = _trust_table()
    assert script.cell([0.5, 0.5]) == "0.500"
    assert script.cell([0.50001, 0.50002]) == "0.500"
    assert script.cell([0.1, 0.3]) == "0.200 ± 0.141 (0.100–0.300)"
    assert script.cell([0.00031, 0.00033], 5) == "0.00032 ± 0.00001 (0.00031–0.00033)"
    assert script.cell([0.1, None]) == "–"
