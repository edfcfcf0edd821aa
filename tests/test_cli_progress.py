"""``analyze --full-resolution`` shows a progress bar per sliding-window tile of the image being analysed (app/cli/analysis_bar.py)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from PIL import Image

from app.cli import main
from app.io.bundle import load_bundle
from app.io.synthetic import make_scene
from app.workflows.analyzer import Analyzer

BUDGET = 2**20  # tiles the 200x232 scene: `--memory-budget 1M`


def scenes(folder: Path) -> Path:
    folder.mkdir()
    for index in (1, 2):
        Image.fromarray(make_scene("test", index, size=232).image[:200]).save(folder / f"s{index}.png")
    return folder


def test_full_resolution_shows_a_bar_per_tile_for_each_image(tiny_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = Analyzer(load_bundle(tiny_bundle_dir), memory_budget=BUDGET).tile_grid(200, 232)
    assert grid is not None
    tiles = len(grid.tops) * len(grid.lefts)
    folder = scenes(tmp_path / "in")
    args = ["analyze", str(folder), "--out", str(tmp_path / "out"), "--samples", "2", "--model", str(tiny_bundle_dir), "--memory-budget", "1M"]
    args.append("--full-resolution")
    assert main(args) == 0
    err = capsys.readouterr().err
    counts = [int(done) for done in re.findall(rf"  tiles:[^|]*\|[^|]*\| *(\d+)/{tiles} ", err)]
    assert counts and max(counts) > tiles // 2, err[-2000:]
    restarts = sum(later < earlier for earlier, later in itertools.pairwise(counts))
    assert restarts == 1, f"one bar per image, starting again for the second: {counts}"

    assert main([*args[:3], str(tmp_path / "out2"), *args[4:], "--quiet"]) == 0
    assert "tiles" not in capsys.readouterr().err
    assert main([*args[:3], str(tmp_path / "out3"), *args[4:-1]]) == 0  # working resolution: the images' bar only
    assert "tiles" not in capsys.readouterr().err
