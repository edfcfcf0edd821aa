"""``summary.csv`` leaves out a ``percentile_<map>`` column that would be blank for every row of the run (issue 25, item 3)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from app.cli import main
from app.maps.registry import DETECTION_MAPS
from app.workflows.analyse_folder import OPTIONAL_FIELDS, SUMMARY_FIELDS, SummaryRow, write_summary


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh))


def _row(name: str, percentiles: dict[str, float]) -> SummaryRow:
    return SummaryRow(file=f"{name}.png", output=name, status="ok", percentiles=percentiles)


def test_a_percentile_blank_for_the_whole_run_is_left_out(tmp_path: Path) -> None:
    """No row has a feature-distance percentile (no fitted density): no such column; the others, filled, stay."""
    others = {m: 50.0 for m in DETECTION_MAPS if m != "feature_distance"}
    write_summary(tmp_path / "summary.csv", [_row("a", others), _row("b", others)])
    header = _header(tmp_path / "summary.csv")
    assert "percentile_feature_distance" not in header
    assert [f"percentile_{m}" for m in others] == [h for h in header if h.startswith("percentile_")]
    assert header == [f for f in SUMMARY_FIELDS if f != "percentile_feature_distance"]


def test_a_percentile_one_row_has_is_written_for_every_row(tmp_path: Path) -> None:
    """One row with a value keeps the column (blank in the rows without one); a failed row alone keeps nothing optional."""
    write_summary(tmp_path / "summary.csv", [_row("a", {"feature_distance": 99.5}), SummaryRow(file="b.png", output="b", status="failed")])
    with (tmp_path / "summary.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["percentile_feature_distance"] for r in rows] == ["99.5", ""]
    assert [h for h in rows[0] if h in OPTIONAL_FIELDS] == ["percentile_feature_distance"]


def test_analyze_without_a_reference_writes_no_percentile_columns(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """The tiny bundle has no reference (the verdict is off): summary.csv has no percentile_ column at all."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / "a.png")
    out = tmp_path / "out"
    assert main(["analyze", str(folder), "--out", str(out), "--samples", "0", "--model", str(tiny_bundle_dir), "--quiet"]) == 0
    header = _header(out / "summary.csv")
    assert not [h for h in header if h.startswith("percentile_")]
    assert {"file", "status", "image_check", "p_value", "unusual"} <= set(header)
