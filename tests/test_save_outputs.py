"""``analyze --save``: a folder writes the maps as PNGs only by default, files named one by one everything as before, and
``--save`` adds the rest (``all``: every file and class array) (issue 25, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.io.bundle import Bundle
from app.io.npz import RAW_ARRAYS
from app.maps.registry import MAP_NAMES
from app.request import AnalysisRequest
from app.workflows.analyse_folder import analyse_files
from app.workflows.analyzer import Analyzer
from app.workflows.outputs import FILE_DEFAULT, FOLDER_DEFAULT, Outputs, chosen_outputs, parse_save_names

PNGS = {f"{name}.png" for name in ("prediction", *MAP_NAMES)}


def _folder(root: Path, count: int = 2) -> Path:
    folder = root / "in"
    folder.mkdir()
    for k in range(count):
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(folder / f"p{k}.png")
    return folder


def _written(out: Path, summary: bool = True) -> dict[str, set[str]]:
    """Each image folder's file names; the summary (written by the command) and nothing else beside them."""
    folders = {p.name: {f.name for f in p.iterdir()} for p in out.iterdir() if p.is_dir()}
    assert {p.name for p in out.iterdir() if not p.is_dir()} == ({"summary.csv"} if summary else set())
    return folders


def test_defaults_and_what_save_adds() -> None:
    assert FOLDER_DEFAULT.files() == ("png",) and FILE_DEFAULT.files() == ("png", "npz", "json")
    assert chosen_outputs((), folder=True) == FOLDER_DEFAULT
    assert chosen_outputs((), folder=False) == FILE_DEFAULT
    assert chosen_outputs(("npz",), folder=True) == Outputs(npz=True, json=False)
    assert chosen_outputs(("mean_probs",), folder=True) == Outputs(npz=True, json=False, arrays=("mean_probs",))
    assert chosen_outputs(("probs",), folder=False) == Outputs(arrays=("probs",))  # as --save probs always did for a file
    assert chosen_outputs(("all",), folder=True) == Outputs(arrays=RAW_ARRAYS)
    assert parse_save_names(" json, png,json ,") == ("png", "json")
    with pytest.raises(ValueError, match="unknown output 'pngs' for --save; choose from png, npz, json, probs"):
        parse_save_names("pngs,npz")


def test_a_folder_writes_the_maps_only_by_default(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["analyze", str(_folder(tmp_path)), "--out", str(out), "--samples", "2", "--model", str(tiny_bundle_dir), "--quiet"]) == 0
    assert _written(out) == {"p0": PNGS, "p1": PNGS}


def test_save_all_writes_everything_for_a_folder(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    folder = _folder(tmp_path)
    assert main(["analyze", str(folder), "--out", str(out), "--samples", "2", "--model", str(tiny_bundle_dir), "--quiet", "--save", "all"]) == 0
    assert _written(out) == {"p0": {*PNGS, "maps.npz", "analysis.json"}, "p1": {*PNGS, "maps.npz", "analysis.json"}}
    with np.load(out / "p0" / "maps.npz") as npz:
        assert set(npz.files) == {*MAP_NAMES, "prediction", *RAW_ARRAYS}
    assert set(json.loads((out / "p0" / "analysis.json").read_text())["npz"]) == {*MAP_NAMES, "prediction", *RAW_ARRAYS}
    some = tmp_path / "some"
    assert main(["analyze", str(folder), "--out", str(some), "--samples", "2", "--model", str(tiny_bundle_dir), "--quiet", "--save", "json"]) == 0
    assert _written(some)["p0"] == {*PNGS, "analysis.json"}


def test_files_named_one_by_one_write_what_they_always_did(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    files = [str(folder / "p0.png"), str(folder / "p1.png")]
    assert main(["analyze", *files, "--out", str(out), "--samples", "2", "--model", str(tiny_bundle_dir), "--quiet"]) == 0
    assert _written(out) == {"p0": {*PNGS, "maps.npz", "analysis.json"}, "p1": {*PNGS, "maps.npz", "analysis.json"}}


def test_an_unknown_name_is_a_usage_error(tiny_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(_folder(tmp_path)), "--out", str(tmp_path / "o"), "--model", str(tiny_bundle_dir), "--save", "maps"])
    assert exc.value.code == 2 and "unknown output 'maps'" in capsys.readouterr().err


def test_a_streamed_image_of_a_folder_keeps_its_store_only_when_asked(tiny_bundle: Bundle, tmp_path: Path) -> None:
    """At full resolution into maps.zarr: maps only leaves the PNGs (the store streamed into the staging folder is dropped)."""
    folder = _folder(tmp_path, 1)
    request = AnalysisRequest(samples=2, seed=1, resolution="full")
    analyzer = Analyzer(tiny_bundle)
    [row] = analyse_files(analyzer, sorted(folder.iterdir()), tmp_path / "maps", request, outputs=FOLDER_DEFAULT, store_format="zarr")
    assert row.status == "ok" and row.means
    assert _written(tmp_path / "maps", summary=False) == {"p0": PNGS}
    [row] = analyse_files(analyzer, sorted(folder.iterdir()), tmp_path / "all", request, outputs=chosen_outputs(("all",), True), store_format="zarr")
    assert _written(tmp_path / "all", summary=False) == {"p0": {*PNGS, "maps.zarr", "analysis.json"}}
