"""Fitting the feature density on a tiny real smp model, storing it with the bundle, and the map it gives every analysis."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.cli import main
from app.engine.geometry import pad_to_stride, to_tensor
from app.engine.sampling import SamplingOptions, run_mc
from app.io.bundle import BundleError, load_bundle, read_card
from app.io.density import DENSITY_FILE, write_density
from app.io.encoding import summarise
from app.io.masks import DatasetError
from app.io.synthetic import make_scene, write_split
from app.maps.density import RIDGE
from app.metrics.image_ood import ImageTypicality, typicality_verdict
from app.metrics.scoring import Evaluator
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.calibrate import REFERENCE_MAPS
from app.workflows.fit_density import MIN_CLASS_PIXELS, fit_density, image_files

SIZE, COUNT = 40, 4


@pytest.fixture(scope="module")
def val_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 40x40 validation scenes (no masks needed)."""
    images, _ = write_split("val", COUNT, tmp_path_factory.mktemp("val"), size=SIZE, seed=3)
    return images


@pytest.fixture(scope="module")
def fitted_dir(tiny_bundle_dir: Path, val_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny bundle with a density fitted on :func:`val_images`."""
    out = Path(shutil.copytree(tiny_bundle_dir, tmp_path_factory.mktemp("fitted") / "bundle"))
    fit_density(Analyzer(load_bundle(out)), image_files(val_images), seed=5, command="test")
    return out


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _reference_pixels(bundle_dir: Path, images: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Decoder features and predicted classes of every pixel, straight from the smp model (no engine code)."""
    bundle = load_bundle(bundle_dir)
    model, norm = bundle.net.model, bundle.card.normalization
    feats, labels = [], []
    for path in images:
        x = (_rgb(path) / 255.0 - np.array(norm.mean)) / np.array(norm.std)
        t = torch.from_numpy(x.transpose(2, 0, 1)[None]).float()
        with torch.no_grad():
            decoded = model.get_submodule("decoder")(model.get_submodule("encoder")(t))
            logits = model.get_submodule("segmentation_head")(decoded)
        feats.append(decoded[0].reshape(decoded.shape[1], -1).T.double().numpy())
        labels.append(logits[0].argmax(0).reshape(-1).numpy())
    return np.concatenate(feats), np.concatenate(labels)


def test_fit_equals_numpy_on_the_decoder_features(fitted_dir: Path, val_images: Path) -> None:
    """Means per predicted class, the tied covariance and the quantiles of d², against NumPy on the model's own outputs."""
    density = load_bundle(fitted_dir).density
    assert density is not None
    x, y = _reference_pixels(fitted_dir, image_files(val_images))
    counts = np.bincount(y, minlength=3)
    kept = np.flatnonzero(counts >= MIN_CLASS_PIXELS)
    assert density.classes.tolist() == kept.tolist() and len(kept) >= 2
    means = np.stack([x[y == c].mean(axis=0) for c in range(3) if counts[c]])
    centred = x - means[np.searchsorted(np.flatnonzero(counts), y)]
    cov = centred.T @ centred / len(x)
    cov += RIDGE * np.trace(cov) / len(cov) * np.eye(len(cov))
    np.testing.assert_allclose(density.means.numpy(), np.stack([x[y == c].mean(axis=0) for c in kept]), rtol=1e-5, atol=1e-6)
    precision = np.linalg.inv(cov)
    np.testing.assert_allclose((density.whitening @ density.whitening.T).numpy(), precision, rtol=1e-4, atol=1e-6 * np.abs(precision).max())
    diffs = x[:, None, :] - density.means.numpy()[None]
    squared = np.einsum("nck,kl,ncl->nc", diffs, precision, diffs).min(axis=1)
    np.testing.assert_allclose(density.quantiles.numpy(), np.quantile(squared, density.levels.numpy()), rtol=1e-3)


def test_the_bundle_stores_the_density_and_its_reference(fitted_dir: Path, val_images: Path) -> None:
    card = read_card(fitted_dir / "model.json")
    info = card.feature_density
    assert info is not None and info.file == DENSITY_FILE and info.command == "test"
    head_conv = load_bundle(fitted_dir).net.model.get_submodule("segmentation_head.0")
    assert isinstance(head_conv, torch.nn.Conv2d)
    assert info.channels == head_conv.in_channels
    assert info.fitted_on["count"] == COUNT and info.fitted_on["pixels"] == COUNT * SIZE * SIZE == info.fitted_on["quantile_pixels"]
    assert (fitted_dir / DENSITY_FILE).stat().st_size < 64 * 1024
    assert (fitted_dir / DENSITY_FILE).stat().st_mode & 0o777 == 0o644
    analyzer = Analyzer(load_bundle(fitted_dir))
    maps = [analyzer.analyze_image(_rgb(p), AnalysisRequest(samples=2, seed=9)).maps["feature_distance"] for p in image_files(val_images)]
    expected = [(float(m.mean(dtype=np.float64)), float(m.std(dtype=np.float64))) for m in maps]
    assert np.array(info.image_statistics) == pytest.approx(np.array(expected), rel=1e-6)
    assert all(0.0 < mean < 1.0 and 0.0 < sd < 0.5 for mean, sd in expected)


def test_the_map_is_deterministic_in_range_and_independent_of_the_samples(fitted_dir: Path) -> None:
    analyzer = Analyzer(load_bundle(fitted_dir))
    rgb = make_scene("ood", 2, size=56).image
    maps = [analyzer.analyze_image(rgb, AnalysisRequest(samples=t, seed=s)).maps["feature_distance"] for t, s in ((0, 0), (3, 1), (3, 2))]
    assert maps[0].shape == (56, 56) and maps[0].dtype == np.float32
    assert float(maps[0].min()) >= 0.0 and float(maps[0].max()) <= 1.0 and float(maps[0].std()) > 0.0
    for other in maps[1:]:
        np.testing.assert_array_equal(other, maps[0])
    again = Analyzer(load_bundle(fitted_dir)).analyze_image(rgb, AnalysisRequest(samples=3, seed=1))
    np.testing.assert_array_equal(again.maps["feature_distance"], maps[0])
    assert again.unavailable == ()


def test_without_a_density_the_map_is_zeros_and_flagged_unavailable(tiny_bundle_dir: Path, fitted_dir: Path) -> None:
    rgb = make_scene("test", 1, size=SIZE).image
    plain = Analyzer(load_bundle(tiny_bundle_dir)).analyze_image(rgb, AnalysisRequest(samples=2))
    assert plain.unavailable == ("feature_distance",)
    assert not plain.maps["feature_distance"].any()
    card = load_bundle(tiny_bundle_dir).card
    assert summarise(plain, card).maps["feature_distance"].description.startswith("not available: this bundle has no fitted feature density")
    density_analyzer = Analyzer(load_bundle(fitted_dir))
    assert density_analyzer.typicality_verdict, "the typicality detail is on by default"
    with_density = density_analyzer.analyze_image(rgb, AnalysisRequest(samples=2))
    assert {v.map for v in with_density.image_ood} == {"feature_distance"}
    for name in REFERENCE_MAPS:
        np.testing.assert_array_equal(with_density.maps[name], plain.maps[name])
    evaluator = Evaluator(num_classes=3)
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    evaluator.add(plain, mask)
    assert "feature_distance" not in evaluator.errors
    evaluator.add(with_density, mask)
    assert "feature_distance" in evaluator.errors


def test_cached_full_and_augmented_passes_give_the_same_map(fitted_dir: Path) -> None:
    """The prefix output (head dropout: the decoder output), a full forward with a hook and test-time augmentation's pass 0 agree."""
    bundle = load_bundle(fitted_dir)
    norm = bundle.card.normalization
    x, _ = pad_to_stride(to_tensor(make_scene("shifted", 0, size=48).image, norm.mean, norm.std), bundle.net.stride)
    options = SamplingOptions(samples=3, seed=1, density=bundle.density)
    cached = run_mc(bundle.net, x, options).feature_distance
    full = run_mc(bundle.net, x, replace(options, strategy="full")).feature_distance
    assert cached is not None and full is not None
    torch.testing.assert_close(full, cached, atol=1e-6, rtol=0)
    analyzer = Analyzer(bundle)
    rgb = make_scene("shifted", 0, size=48).image
    flips = analyzer.analyze_image(rgb, AnalysisRequest(samples=2, tta="flips"))
    np.testing.assert_array_equal(flips.maps["feature_distance"], analyzer.analyze_image(rgb, AnalysisRequest(samples=2)).maps["feature_distance"])


def test_dropout_inside_the_decoder_scores_the_deterministic_decoder_output(tiny_bundle_dir: Path, tmp_path: Path, val_images: Path) -> None:
    """With a decoder site the prefix is not the decoder output: a hooked deterministic pass gives it, never a sampled one."""
    head = Path(shutil.copytree(tiny_bundle_dir, tmp_path / "head"))
    site = Path(shutil.copytree(tiny_bundle_dir, tmp_path / "site"))
    card = json.loads((site / "model.json").read_text())
    card["dropout"]["sites"] = ["decoder.blocks.1"]
    (site / "model.json").write_text(json.dumps(card))
    assert load_bundle(site).net.first_stochastic_stage == "decoder"
    for folder in (site, head):
        fit_density(Analyzer(load_bundle(folder)), image_files(val_images), seed=5)
    a, b = load_bundle(site).density, load_bundle(head).density
    assert a is not None and b is not None
    torch.testing.assert_close(a.means, b.means, rtol=1e-5, atol=1e-6)
    rgb = make_scene("test", 3, size=SIZE).image
    sampled = Analyzer(load_bundle(site)).analyze_image(rgb, AnalysisRequest(samples=3, seed=2)).maps["feature_distance"]
    np.testing.assert_allclose(sampled, Analyzer(load_bundle(head)).analyze_image(rgb, AnalysisRequest(samples=0)).maps["feature_distance"], atol=1e-5)


def test_tiled_analysis_blends_the_map_like_the_softmax(fitted_dir: Path) -> None:
    """A 200x232 scene in 120 px tiles against one pass; a tile's border pixels see padding instead of context.

    Measured (tiny model): mean |Δ| 0.0025, 99th percentile 0.029, max 0.18 (the softmax confidence: 0.0010, 0.013,
    0.050); the bounds leave ~2x margin. Without the map's blend (each pixel from the last tile only) they fail.
    """
    bundle = load_bundle(fitted_dir)
    rgb = make_scene("test", 1, size=232).image[:200]
    whole = Analyzer(bundle).analyze_image(rgb, AnalysisRequest(samples=0, resolution="full"))
    small = Analyzer(load_bundle(fitted_dir))
    small.memory_budget = int(small.cost.tile_bytes((120, 120), 232)) + 1
    grid = small.tile_grid(200, 232)
    assert grid is not None and grid.tile == (120, 120)
    tiled = small.analyze_image(rgb, AnalysisRequest(samples=0, resolution="full"))
    diff = np.abs(tiled.maps["feature_distance"] - whole.maps["feature_distance"])
    assert diff.mean() <= 0.005 and np.quantile(diff, 0.99) <= 0.06 and diff.max() <= 0.35
    assert float(tiled.maps["feature_distance"].min()) >= 0.0 and float(tiled.maps["feature_distance"].max()) <= 1.0


def test_typicality_is_the_mahalanobis_distance_of_mean_and_spread_among_the_reference_pairs() -> None:
    rng = np.random.default_rng(0)
    pairs = np.c_[rng.normal(0.5, 0.06, 200), rng.normal(0.28, 0.02, 200)]
    typicality = ImageTypicality(pairs.tolist())
    cov = np.cov(pairs.T, bias=True)
    point = np.array([0.55, 0.2])
    d = point - pairs.mean(axis=0)
    assert typicality.score(point.tolist()) == pytest.approx(float(d @ np.linalg.inv(cov) @ d), rel=1e-6)
    assert typicality.reference == sorted(typicality.reference) and len(typicality.reference) == 200
    assert typicality.score((0.3, 0.35)) == 0.0  # a lower mean and a wider spread are no sign of an unfamiliar input
    e = np.array([0.0, 0.2 - pairs[:, 1].mean()])
    assert typicality.score((0.3, 0.2)) == pytest.approx(float(e @ np.linalg.inv(cov) @ e), rel=1e-6)
    blurred = typicality_verdict("feature_distance", 0.5, 0.18, typicality)
    assert blurred.unusual and blurred.percentile == 100.0 and "low-contrast" in blurred.message and "farther" not in blurred.message
    far = typicality_verdict("feature_distance", 0.8, 0.28, typicality)
    assert far.unusual and "farther from the training features" in far.message and far.image_mean == 0.8
    typical = typicality_verdict("feature_distance", 0.5, 0.28, typicality)
    assert not typical.unusual and typical.percentile < 30.0  # about a quarter of the reference scores 0 (ties count half)
    with pytest.raises(ValueError, match="at least 3"):
        ImageTypicality([(0.5, 0.3), (0.4, 0.2)])


def test_the_verdict_ranks_a_fit_image_among_the_fit_images(fitted_dir: Path, val_images: Path) -> None:
    """A fit image's own (mean, spread) is one of the reference pairs: its percentile counts the more typical ones."""
    analyzer = Analyzer(load_bundle(fitted_dir))
    analyzer.typicality_verdict = True
    info = analyzer.bundle.card.feature_density
    assert info is not None
    typicality = ImageTypicality(info.image_statistics)
    first = image_files(val_images)[0]
    verdict = analyzer.analyze_image(_rgb(first), AnalysisRequest(samples=0)).image_ood[-1]
    assert verdict.map == "feature_distance"
    score = typicality.score(info.image_statistics[0])
    below = sum(s < score - 1e-9 for s in typicality.reference)
    assert verdict.percentile == pytest.approx(100.0 * (below + 0.5) / COUNT)


def test_fit_density_command(tiny_bundle_dir: Path, val_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = Path(shutil.copytree(tiny_bundle_dir, tmp_path / "bundle"))
    assert main(["fit-density", "--images", str(val_images), "--model", str(bundle), "--seed", "2", "--quiet"]) == 0
    assert "feature density: " in capsys.readouterr().err
    info = json.loads((bundle / "model.json").read_text())["feature_density"]
    assert info["command"] == f"seg-uncertainty fit-density --images {val_images} --model {bundle} --seed 2"
    assert info["fitted_on"]["seed"] == 2 and len(info["image_statistics"]) == COUNT
    assert load_bundle(bundle).density is not None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["fit-density", "--images", str(empty), "--model", str(bundle), "--quiet"]) == 2
    assert "no images" in capsys.readouterr().err


def test_a_bundle_whose_density_file_is_missing_or_wrong_is_refused(fitted_dir: Path, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(fitted_dir, tmp_path / "broken"))
    (broken / DENSITY_FILE).unlink()
    with pytest.raises(BundleError, match="not found"):
        load_bundle(broken)
    density = load_bundle(fitted_dir).density
    assert density is not None
    write_density(replace(density, classes=torch.arange(density.classes.numel()).flip(0)), broken / DENSITY_FILE)
    with pytest.raises(BundleError, match="classes"):
        load_bundle(broken)
    card = json.loads((fitted_dir / "model.json").read_text())
    card["feature_density"]["file"] = "../model.safetensors"
    (broken / "model.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match=r"feature_density\.file"):
        load_bundle(broken)


def test_unreadable_images_are_named(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    folder, _ = write_split("val", 3, tmp_path / "data", size=SIZE)
    (folder / "00001.png").write_bytes(b"not a png")
    analyzer = Analyzer(load_bundle(tiny_bundle_dir))
    with pytest.raises(DatasetError, match=r"00001\.png"):
        fit_density(analyzer, image_files(folder), write=False)
    with pytest.raises(DatasetError, match="at least 3 images, got 2"):
        fit_density(analyzer, image_files(folder)[::2], write=False)
