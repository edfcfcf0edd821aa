"""Ensemble bundles: a card of kind "ensemble" naming member folders, loaded and analysed as one model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_bundle, second_card, tiny_card

from app.defaults import TtaMode
from app.engine.ensemble import EnsembleNet
from app.io.bundle import BundleError, Normalization, load_bundle, write_card
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer


def _ensemble(folder: Path, members: list[str], **extra: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    card = {"format_version": 1, "kind": "ensemble", "name": "duo", "members": members, **extra}
    (folder / "model.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ensemble")
    make_tiny_bundle(base / "a", seed=1)
    make_tiny_bundle(base / "b", seed=2)
    return base


def test_an_ensemble_card_loads_its_members_relative_to_its_folder(members: Path) -> None:
    folder = _ensemble(members / "duo", ["../a", "../b"], domain="two tiny models")
    bundle = load_bundle(folder)
    assert isinstance(bundle.net, EnsembleNet) and len(bundle.net.networks) == 2
    assert not any(m.training for m in bundle.net.modules())
    assert bundle.card.name == "duo" and bundle.card.domain == "two tiny models"
    assert bundle.class_names == ["bg", "a", "b"]
    assert [m["path"] for m in bundle.card.provenance["members"]] == ["../a", "../b"]
    a = load_bundle(members / "a").net
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(bundle.net.networks[0](x), a(x))


def test_analyzer_reports_the_ensemble_method_passes_and_exact_errors(members: Path) -> None:
    analyzer = Analyzer(load_bundle(_ensemble(members / "duo2", ["../a", "../b"])))
    rgb = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    plain = analyzer.analyze_image(rgb, AnalysisRequest(samples=0))
    assert (plain.method, plain.passes, plain.samples, plain.error_method) == ("ensemble(2)", 2, 0, "exact")
    assert plain.mean_errors["mutual_information"] == 0.0
    assert plain.maps["mutual_information"].max() > 1e-3
    both = analyzer.analyze_image(rgb, AnalysisRequest(samples=4, tta="flips", seed=3))
    assert (both.method, both.passes, both.samples, both.error_method) == ("ensemble(2) + tta:flips + mc_dropout", 8, 4, "jackknife")
    assert both.mean_errors["mutual_information"] is not None and both.mean_errors["mutual_information"] > 0
    again = analyzer.analyze_image(rgb, AnalysisRequest(samples=4, tta="flips", seed=3))
    assert np.array_equal(again.maps["mutual_information"], both.maps["mutual_information"])
    with pytest.raises(ValueError, match="tta must be one of"):
        analyzer.analyze_image(rgb, AnalysisRequest(samples=0, tta="rotate"))  # type: ignore[arg-type]


def test_single_model_analyses_report_their_method(tiny_bundle_dir: Path) -> None:
    analyzer = Analyzer(load_bundle(tiny_bundle_dir))
    rgb = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cases: dict[tuple[int, TtaMode], tuple[str, int, str]] = {
        (0, "none"): ("deterministic", 1, "exact"),
        (5, "none"): ("mc_dropout", 1, "jackknife"),
        (0, "flips"): ("tta:flips", 4, "exact"),
    }
    for (samples, tta), expected in cases.items():
        a = analyzer.analyze_image(rgb, AnalysisRequest(samples=samples, tta=tta))
        assert (a.method, a.passes, a.error_method) == expected
    photometric = analyzer.analyze_image(rgb, AnalysisRequest(samples=0, tta="photometric"))
    assert photometric.error_method == "jackknife"  # the jitters are random: leave one pass out


def test_members_must_share_classes_and_normalisation(members: Path, tmp_path: Path) -> None:
    make_tiny_bundle(tmp_path / "other", card=second_card())
    with pytest.raises(BundleError, match="need the same classes"):
        load_bundle(_ensemble(tmp_path / "mixed", [str(members / "a"), "../other"]))
    card = tiny_card()
    card.normalization = Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    make_tiny_bundle(tmp_path / "shifted", card=card)
    with pytest.raises(BundleError, match="need the same normalisation"):
        load_bundle(_ensemble(tmp_path / "norm", [str(members / "a"), "../shifted"]))


def test_clear_errors_for_missing_nested_and_malformed_members(members: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"member '\.\./nowhere'"):
        load_bundle(_ensemble(tmp_path / "missing", [str(members / "a"), "../nowhere"]))
    inner = _ensemble(tmp_path / "inner", [str(members / "a"), str(members / "b")])
    with pytest.raises(BundleError, match="members must be single models"):
        load_bundle(_ensemble(tmp_path / "nested", [str(members / "a"), str(inner)]))
    with pytest.raises(BundleError, match="members: List should have at least 2 items"):
        load_bundle(_ensemble(tmp_path / "alone", [str(members / "a")]))
    with pytest.raises(BundleError, match="member_weights: Extra inputs"):
        load_bundle(_ensemble(tmp_path / "typo", [str(members / "a"), str(members / "b")], member_weights=[1, 2]))


def test_a_model_card_never_overwrites_an_ensemble_card(members: Path) -> None:
    folder = _ensemble(members / "kept", ["../a", "../b"])
    before = (folder / "model.json").read_text()
    with pytest.raises(BundleError, match="ensemble's card"):
        write_card(load_bundle(folder).card, folder)
    assert (folder / "model.json").read_text() == before


def test_the_shipped_ensemble_loads_with_three_members() -> None:
    bundle = load_bundle("ensemble")
    assert isinstance(bundle.net, EnsembleNet) and len(bundle.net.networks) == 3
    assert bundle.class_names == load_bundle("default").class_names
    for member in bundle.card.provenance["members"]:
        assert 0.0 < member["test_miou"] <= 1.0
    folder = Path(__file__).resolve().parent.parent / "models" / "ensemble"
    for weights in folder.glob("*/model.safetensors"):
        assert weights.stat().st_size < 10 * 2**20, weights


def test_export_refuses_an_ensemble_by_name(members: Path, tmp_path: Path) -> None:
    from app.io.export import export_source

    with pytest.raises(BundleError, match="is an ensemble; export takes one model"):
        export_source(_ensemble(members / "exported", ["../a", "../b"]), tmp_path / "out")
    assert not (tmp_path / "out").exists()
