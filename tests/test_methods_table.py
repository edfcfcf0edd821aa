"""``scripts/trust_table.py --methods`` on a tiny input: the numbers it prints, recomputed from fresh analyses."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torchmetrics.functional.classification import multiclass_calibration_error

from app.engine.analysis import Analysis
from app.engine.dropout_masks import image_seed
from app.io.bundle import load_bundle
from app.maps.registry import get_map
from app.metrics.image_ood import ImageTypicality, image_auroc
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "trust_table.py"
PHOTOS = ["astronaut", "coffee"]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trust_table_methods", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(text: str) -> dict[tuple[str, str], list[str]]:
    """Markdown rows keyed by their first two cells (method, second column), header rows included."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0], cells[1]] = cells[2:]
    return rows


def _analyses(analyzer: Analyzer, folder: Path, samples: int, seed: int = 0) -> list[tuple[Analysis, np.ndarray]]:
    out = []
    for path in sorted((folder / "images").iterdir()):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        mask = np.asarray(Image.open(folder / "masks" / path.name))
        out.append((analyzer.analyze_image(rgb, AnalysisRequest(samples=samples, seed=image_seed(seed, path.name))), mask))
    return out


def _sklearn_auroc(inside: list[float], outside: list[float], uncertain_when: str) -> float:
    sign = -1.0 if uncertain_when == "low" else 1.0
    return float(roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(outside))], sign * np.array(inside + outside)))


def test_image_auroc_is_the_mann_whitney_statistic_with_ties_counted_half() -> None:
    assert image_auroc([0.1, 0.2], [0.3, 0.2]) == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert image_auroc([0.9, 0.8], [0.1, 0.5], "low") == 1.0
    assert image_auroc([], [0.1]) is None


@pytest.mark.slow
def test_the_methods_option_prints_numbers_that_fresh_analyses_reproduce(tmp_path: Path) -> None:
    """MC dropout's image-level AUROCs (sklearn), ECE of its mean prediction (torchmetrics), the typicality row, what ran."""
    out = tmp_path / "run"
    assert _script().main(["--methods", "--count", "2", "--size", "64", "--samples", "2", "--photos", *PHOTOS, "--out", str(out)]) == 0
    text = (out / "methods.md").read_text()
    rows = _rows(text)
    saved = json.loads((out / "methods.json").read_text())
    assert [m["reported"] for m in saved.values()] == [
        "deterministic",
        "mc_dropout",
        "tta:flips",
        "tta:flips + mc_dropout",
        "ensemble(3)",
        "ensemble(3) + mc_dropout",
        "ensemble(3) + tta:flips + mc_dropout",
    ]
    analyzer = Analyzer(load_bundle("default"))
    data = out / "data"
    fresh = {split: _analyses(analyzer, data / split, samples=2) for split in ("test", "shifted", "ood")}
    photos = [analyzer.analyze_image(rgb, AnalysisRequest(samples=2, seed=image_seed(0, name))) for name, rgb in _script().skimage_photos(PHOTOS)]
    sets = {"shifted": [a for a, _m in fresh["shifted"]], "ood": [a for a, _m in fresh["ood"]], "real photos": photos}
    header = rows["method", "image-level score"]
    assert header == ["shifted", "ood", "real photos"]
    label = "MC dropout (T=2)"
    assert (label, "`mc_dropout`") in rows and ("one pass + feature density", "`deterministic`") in rows
    for name in ("confidence", "entropy", "variance", "mutual_information", "feature_distance"):
        inside = [float(a.maps[name].mean(dtype=np.float64)) for a, _m in fresh["test"]]
        expected = [_sklearn_auroc(inside, [float(a.maps[name].mean(dtype=np.float64)) for a in sets[o]], get_map(name).uncertain_when) for o in header]
        assert rows[label, f"{name}, image mean"] == [f"{v:.3f}" for v in expected], name

    info = analyzer.bundle.card.feature_density
    assert info is not None
    reference = np.asarray(info.image_statistics)
    precision = np.linalg.inv(np.cov(reference.T, bias=True))

    def typicality(a: Analysis) -> float:
        v = a.maps["feature_distance"]
        return typicality_of(float(v.mean(dtype=np.float64)), float(v.std(dtype=np.float64)), reference, precision)

    assert ImageTypicality(info.image_statistics).score((0.6, 0.1)) == pytest.approx(typicality_of(0.6, 0.1, reference, precision), rel=1e-6)
    inside = [typicality(a) for a, _m in fresh["test"]]
    scores = saved["one pass + feature density"]["images"]
    assert scores["test"]["typicality"] == pytest.approx(inside, rel=1e-6, abs=1e-9)
    assert scores["real photos"]["typicality"] == pytest.approx([typicality(a) for a in photos], rel=1e-6, abs=1e-9)
    assert scores["real photos"]["names"] == PHOTOS
    expected = [_sklearn_auroc(inside, [typicality(a) for a in sets[o]], "high") for o in header]
    assert rows["one pass + feature density", "feature_distance typicality (mean and spread)"] == [f"{v:.3f}" for v in expected]

    probs = torch.cat([torch.from_numpy(a.mean_probs).reshape(a.mean_probs.shape[0], -1).T for a, _m in fresh["test"]])
    labels = torch.cat([torch.from_numpy(m.astype(np.int64)).reshape(-1) for _a, m in fresh["test"]])
    valid = labels < probs.shape[1]
    ece = float(multiclass_calibration_error(probs[valid], labels[valid], num_classes=probs.shape[1], n_bins=15, norm="l1"))
    columns = rows["method", "reported as"]
    assert rows[label, "`mc_dropout`"][columns.index("ECE test")] == f"{ece:.4f}"


def typicality_of(mean: float, spread: float, reference: np.ndarray, precision: np.ndarray) -> float:
    """The one-sided squared Mahalanobis distance of ``(mean, spread)`` from the reference pairs' centre."""
    d = np.array([max(mean - reference[:, 0].mean(), 0.0), min(spread - reference[:, 1].mean(), 0.0)])
    return float(d @ precision @ d)
