"""Calibrating records the image-level OOD reference: per detection map (but the feature distance, whose reference the density
fit stores), the sorted image means of the calibration images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.engine.dropout_masks import image_seed
from app.io.bundle import load_bundle, read_card
from app.io.masks import pair_files
from app.io.synthetic import write_split
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.calibrate import REFERENCE_MAPS, calibrate_bundle

SAMPLES = 3
SEED = 4


@pytest.fixture
def scenes(tmp_path: Path) -> tuple[Path, Path]:
    """Four 40x40 in-distribution scenes with 3-class masks (labels >= 3 folded to 2)."""
    images, masks = write_split("val", 4, tmp_path / "data", size=40, seed=3)
    for path in masks.iterdir():
        with Image.open(path) as img:
            m = np.asarray(img).copy()
        m[m >= 3] = 2
        Image.fromarray(m).save(path)
    return images, masks


@pytest.fixture
def bundle_dir(tiny_bundle_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny bundle that calibration may overwrite."""
    return Path(shutil.copytree(tiny_bundle_dir, tmp_path / "bundle"))


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_reference_holds_the_sorted_image_means_of_separate_analyses(scenes: tuple[Path, Path], bundle_dir: Path) -> None:
    images, masks = scenes
    pairs = pair_files(images, masks)
    fit = calibrate_bundle(Analyzer(load_bundle(bundle_dir)), pairs, images=images, masks=masks, seed=SEED, samples=SAMPLES, split="four val scenes")
    card = read_card(bundle_dir / "model.json")
    reference = card.image_reference
    assert reference is not None and reference == fit.image_reference
    assert (reference.split, reference.images, reference.samples) == ("four val scenes", 4, SAMPLES)
    assert set(reference.means) == set(REFERENCE_MAPS)
    fresh = Analyzer(load_bundle(bundle_dir))
    maps = [fresh.analyze_image(_rgb(image), AnalysisRequest(samples=SAMPLES, seed=image_seed(SEED, image.name))).maps for image, _ in pairs]
    for name in REFERENCE_MAPS:
        expected = sorted(float(np.mean(m[name], dtype=np.float64)) for m in maps)
        assert reference.means[name] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert reference.means["mutual_information"][-1] > 0.0


def test_a_later_analysis_gets_a_verdict_per_detection_map(scenes: tuple[Path, Path], bundle_dir: Path) -> None:
    """A calibration image itself ranks where its mean sits among the reference (ties count half)."""
    images, masks = scenes
    pairs = pair_files(images, masks)
    calibrate_bundle(Analyzer(load_bundle(bundle_dir)), pairs, images=images, masks=masks, seed=SEED, samples=SAMPLES)
    analyzer = Analyzer(load_bundle(bundle_dir))
    reference = analyzer.bundle.card.image_reference
    assert reference is not None and reference.split == str(images)
    analysis = analyzer.analyze_image(_rgb(pairs[0][0]), AnalysisRequest(samples=SAMPLES, seed=image_seed(SEED, pairs[0][0].name)))
    verdicts = {v.map: v for v in analysis.image_ood}
    assert list(verdicts) == list(REFERENCE_MAPS)
    for name, verdict in verdicts.items():
        means = np.array(reference.means[name])
        here = float(np.mean(analysis.maps[name], dtype=np.float64))
        ties = np.isclose(means, here, rtol=1e-6, atol=1e-12)
        less = (means > here) & ~ties if name == "confidence" else (means < here) & ~ties
        assert ties.sum() >= 1
        assert verdict.percentile == pytest.approx(100.0 * (less.sum() + 0.5 * ties.sum()) / 4)
        assert not verdict.unusual


def test_the_temperature_does_not_depend_on_the_samples(scenes: tuple[Path, Path], tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """τ is fitted on the deterministic softmax, which the MC samples of the same analysis leave alone."""
    images, masks = scenes
    pairs = pair_files(images, masks)
    taus = []
    for samples in (0, SAMPLES):
        copy = Path(shutil.copytree(tiny_bundle_dir, tmp_path / f"b{samples}"))
        taus.append(calibrate_bundle(Analyzer(load_bundle(copy)), pairs, images=images, masks=masks, samples=samples).temperature)
    assert taus[0] != 1.0 and taus[1] == pytest.approx(taus[0], rel=1e-4)


def test_calibrate_command_records_the_reference(scenes: tuple[Path, Path], bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, masks = scenes
    args = ["calibrate", "--images", str(images), "--masks", str(masks), "--model", str(bundle_dir), "--quiet"]
    assert main([*args, "--samples", "2"]) == 0
    assert "image-level OOD reference" in capsys.readouterr().err
    reference = read_card(bundle_dir / "model.json").image_reference
    assert reference is not None and (reference.images, reference.samples) == (4, 2)
    assert all(len(v) == 4 for v in reference.means.values())
    assert main([*args, "--samples", "-1"]) == 2
    assert "--samples" in capsys.readouterr().err
