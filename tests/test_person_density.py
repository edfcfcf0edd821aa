"""The person model's shipped feature density: fitted on the package photos of scripts/person_density_images.py (none of the
page's examples), reproducible from them, and used by analyses (the feature_distance map is available)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from app.io.bundle import load_bundle
from app.io.density import read_density
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.fit_density import fit_density

ROOT = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("person_density_images", ROOT / "scripts" / "person_density_images.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_shipped_density_rests_on_the_scripts_16_photos_and_not_the_examples() -> None:
    images = _script().density_images()
    card = load_bundle("person").card
    assert card.feature_density is not None
    assert card.feature_density.fitted_on["count"] == len(images) == 16 == len(card.feature_density.image_statistics)
    assert card.feature_density.classes == ["background", "person"]
    examples = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]
    for rgb in images.values():
        assert all(rgb.shape != ex.shape or not np.array_equal(rgb, ex) for ex in examples), "an example leaked into the fit"


def test_refitting_on_the_scripts_photos_gives_the_shipped_density(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for name, rgb in _script().density_images().items():
        Image.fromarray(rgb, "RGB").save(folder / f"{name}.png")
    bundle_dir = tmp_path / "person"
    shutil.copytree(ROOT / "models" / "person", bundle_dir)
    shipped = read_density(ROOT / "models" / "person", load_bundle("person").card)
    assert shipped is not None
    fit = fit_density(Analyzer(load_bundle(bundle_dir)), sorted(folder.glob("*.png")), seed=0, write=False)
    torch.testing.assert_close(fit.density.means, shipped.means, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(fit.density.quantiles, shipped.quantiles, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_person_analyses_compute_the_feature_distance(name: str) -> None:
    analyzer = Analyzer(load_bundle("person"))
    assert "feature_distance" not in analyzer.unavailable
    analysis = analyzer.analyze_image(np.asarray(getattr(skimage.data, name)()), AnalysisRequest(samples=0))
    distance = analysis.maps["feature_distance"]
    assert np.isfinite(distance).all() and float(distance.min()) >= 0.0 and float(distance.max()) <= 1.0
    assert float(distance.std()) > 0.01, "a percentile map, not a constant"
