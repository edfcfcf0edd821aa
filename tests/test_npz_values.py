"""The values in the NPZ that ``analyze`` writes, recomputed from the weights without the engine.

The reference is a fresh smp model loaded from the bundle's safetensors (no dropout hooks, no staging, no factorised or
tiled head): ``probs`` is the softmax of its plain eval-mode forward, and ``mean_probs`` / ``class_variance`` come
from a loop of one head forward per sample, with the engine's masks for those samples applied to the decoder output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch
from PIL import Image
from safetensors.torch import load_file

from app.cli import main
from app.engine.dropout import MCDropout, SamplingPlan
from app.io.bundle import WEIGHTS_FILE, load_bundle, read_card
from app.io.synthetic import iter_split

HEIGHT, WIDTH, SAMPLES, SEED = 64, 96, 4, 9


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    """A 64x96 synthetic scene as PNG (a multiple of the tiny model's stride, so no padding is involved)."""
    rgb = np.ascontiguousarray(next(iter_split("test", 1, size=WIDTH, seed=3)).image[:HEIGHT])
    path = tmp_path / "scene.png"
    Image.fromarray(rgb).save(path)
    return path


def _reference(bundle_dir: Path, rgb: np.ndarray, temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(probs, mean_probs, class_variance)`` as ``(C, H, W)`` float64, from a plain smp model and a per-sample loop."""
    card = read_card(bundle_dir / "model.json")
    model = smp.create_model(**{k: v for k, v in card.architecture.items() if k != "encoder_weights"}, encoder_weights=None)
    model.load_state_dict(load_file(str(bundle_dir / WEIGHTS_FILE)), strict=True)
    model.eval()
    mean, std = torch.tensor(card.normalization.mean).view(3, 1, 1), torch.tensor(card.normalization.std).view(3, 1, 1)
    x = ((torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0 - mean) / std).unsqueeze(0)
    drop = load_bundle(bundle_dir).net.dropouts[0]
    assert isinstance(drop, MCDropout)
    with torch.no_grad():
        probs = torch.softmax(model(x).double() / temperature, 1)[0]
        decoded = model.decoder(model.encoder(x))
        samples = []
        for t in range(SAMPLES):
            mask = drop.masks(SamplingPlan(SEED, (t,)), decoded.shape, decoded.device, decoded.dtype)
            samples.append(torch.softmax(model.segmentation_head(decoded * mask).double() / temperature, 1)[0])
    stack = torch.stack(samples)
    return probs, stack.mean(0), stack.var(0, unbiased=False)


def _analyze(bundle_dir: Path, scene: Path, out: Path, *extra: str) -> dict[str, np.ndarray]:
    args = ["--model", str(bundle_dir), "--samples", str(SAMPLES), "--seed", str(SEED), "--quiet", "--save", "all", *extra]
    code = main(["analyze", str(scene), "--out", str(out), *args])
    assert code == 0
    (npz,) = out.glob("*/maps.npz")
    with np.load(npz) as data:
        return {k: data[k] for k in data.files}


def test_probs_and_class_variance_in_the_npz_equal_a_plain_recomputation(tiny_bundle_dir: Path, scene: Path, tmp_path: Path) -> None:
    """probs = softmax of the eval-mode forward; mean_probs and class_variance = moments of a per-sample loop."""
    arrays = _analyze(tiny_bundle_dir, scene, tmp_path / "out")
    with Image.open(scene) as img:
        rgb = np.array(img.convert("RGB"))
    probs, mean_probs, class_variance = _reference(tiny_bundle_dir, rgb, 1.0)
    assert arrays["probs"].shape == (3, HEIGHT, WIDTH)
    np.testing.assert_allclose(arrays["probs"], probs.numpy(), atol=2e-5, rtol=0)
    np.testing.assert_allclose(arrays["mean_probs"], mean_probs.numpy(), atol=2e-5, rtol=0)
    np.testing.assert_allclose(arrays["class_variance"], class_variance.numpy(), atol=2e-5, rtol=0)
    np.testing.assert_array_equal(arrays["prediction"], mean_probs.argmax(0).numpy())
    assert float(class_variance.max()) > 1e-2  # the check is not trivially about zeros


def test_analyze_calibrated_applies_the_bundle_temperature(tiny_bundle_dir: Path, scene: Path, tmp_path: Path) -> None:
    """``analyze --calibrated``: the NPZ's probs are softmax(z / τ) with the card's τ; without the flag, softmax(z)."""
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, bundle_dir)
    raw = json.loads((bundle_dir / "model.json").read_text())
    raw["temperature"] = 2.5
    (bundle_dir / "model.json").write_text(json.dumps(raw))
    with Image.open(scene) as img:
        rgb = np.array(img.convert("RGB"))
    calibrated = _analyze(bundle_dir, scene, tmp_path / "cal", "--calibrated")
    probs, mean_probs, class_variance = _reference(bundle_dir, rgb, 2.5)
    np.testing.assert_allclose(calibrated["probs"], probs.numpy(), atol=2e-5, rtol=0)
    np.testing.assert_allclose(calibrated["mean_probs"], mean_probs.numpy(), atol=2e-5, rtol=0)
    np.testing.assert_allclose(calibrated["class_variance"], class_variance.numpy(), atol=2e-5, rtol=0)
    summary = json.loads(next((tmp_path / "cal").glob("*/analysis.json")).read_text())
    assert summary["calibrated"] is True and summary["temperature"] == 2.5
    plain = _analyze(bundle_dir, scene, tmp_path / "plain")
    raw_probs, _, _ = _reference(bundle_dir, rgb, 1.0)
    np.testing.assert_allclose(plain["probs"], raw_probs.numpy(), atol=2e-5, rtol=0)
    assert float(np.abs(plain["probs"] - calibrated["probs"]).max()) > 0.05
