"""``analyze --adversarial``: the flip-ε map, perturbed images and predictions as files, shares in analysis.json, arrays in maps.npz."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.io.adversarial_files import NEVER_COLOUR, render_flip_epsilon


def _scene(path: Path, size: int = 40) -> Path:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR).save(path)
    return path


def test_analyze_writes_the_adversarial_outputs(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    image = _scene(tmp_path / "scene.png")
    out = tmp_path / "out"
    args = ["analyze", str(image), "--out", str(out), "--samples", "2", "--model", str(tiny_bundle_dir), "--quiet"]
    assert main([*args, "--adversarial", "--adversarial-epsilons", "2/255,1", "--adversarial-steps", "2"]) == 0
    folder = out / "scene"
    for name in ("flip_epsilon.png", "adversarial_eps1.png", "adversarial_eps1_prediction.png", "adversarial_eps2.png", "adversarial_eps2_prediction.png"):
        assert (folder / name).is_file(), name
    info = json.loads((folder / "analysis.json").read_text())["adversarial"]
    assert info["epsilons"] == [1.0, 2.0] and info["steps"] == 2 and [level["epsilon_text"] for level in info["levels"]] == ["1/255", "2/255"]
    with np.load(folder / "maps.npz") as z:
        flip = z["flip_epsilon"]
        assert flip.shape == (40, 40) and flip.dtype == np.float32
        assert z["adversarial_images"].shape == (2, 40, 40, 3) and z["adversarial_predictions"].shape == (2, 40, 40)
        for k, level in enumerate(info["levels"]):
            assert level["flippable_share"] == pytest.approx(float((flip <= level["epsilon"]).mean()))
            rounded = float((z["adversarial_predictions"][k] != z["deterministic_prediction"]).mean())
            assert level["rounded_flip_share"] == pytest.approx(rounded)
    assert info["never_flipped_share"] == pytest.approx(float(np.isinf(flip).mean()))
    drawn = np.asarray(Image.open(folder / "flip_epsilon.png").convert("RGB"))
    assert np.array_equal(drawn, render_flip_epsilon(flip))


def test_analyze_without_the_flag_writes_none_of_it(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    image = _scene(tmp_path / "scene.png", 24)
    out = tmp_path / "out"
    assert main(["analyze", str(image), "--out", str(out), "--samples", "0", "--model", str(tiny_bundle_dir), "--quiet"]) == 0
    assert "adversarial" not in json.loads((out / "scene" / "analysis.json").read_text())
    assert not (out / "scene" / "flip_epsilon.png").exists()
    with np.load(out / "scene" / "maps.npz") as z:
        assert "flip_epsilon" not in z.files


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--adversarial-epsilons", "1,x"], "not a number"),
        (["--adversarial-epsilons", "0,2"], "(0, 255]"),
        (["--adversarial-epsilons", "2/100"], "fraction of 255"),
        (["--adversarial-steps", "-1"], "adversarial_steps"),
        (["--full-resolution"], "working resolution"),
    ],
)
def test_bad_adversarial_options_are_usage_errors(
    tiny_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    image = _scene(tmp_path / "scene.png", 16)
    code = main(["analyze", str(image), "--out", str(tmp_path / "out"), "--model", str(tiny_bundle_dir), "--quiet", "--adversarial", *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_flip_scale_is_fixed() -> None:
    values = np.array([[0.25, 64.0, np.inf, 1000.0]], dtype=np.float32)
    rgb = render_flip_epsilon(values)
    assert tuple(rgb[0, 2]) == NEVER_COLOUR
    assert np.array_equal(rgb[0, 1], rgb[0, 3])  # beyond the scale's top: its colour
    assert not np.array_equal(rgb[0, 0], rgb[0, 1])
