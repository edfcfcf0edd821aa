"""``analyze`` output folders: safe, unique names for hostile file names, and an unusable ``--out`` as a one-line error."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.workflows.output_folder import output_names


def _png(path: Path, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(path, format="PNG")
    return path


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_output_names_are_safe_and_unique() -> None:
    """Dots, separators, reserved and case-folded clashes all get their own plain folder name."""
    names = [
        "...png",
        "..png",
        ".png",
        "summary.csv.png",
        "SUMMARY.CSV.jpg",
        "a.png",
        "A.jpg",
        "a_2.png",
        "x:y*?.png",
        " .hidden. .png",
        "e\udce9.png",
        "long" * 100 + ".png",
    ]
    got = output_names([Path("in") / n for n in names])
    assert got[:10] == ["image", "image_2", "png", "summary.csv_2", "SUMMARY.CSV_3", "a", "A_2", "a_2_2", "x_y__", "hidden"]
    assert got[10] == "e_"
    assert len(got[11].encode()) <= 120 and got[11].startswith("long")
    assert len({n.casefold() for n in got}) == len(got)
    for name in got:
        assert name not in ("", ".", "..") and "/" not in name and "\\" not in name and not name.startswith(".")
        assert name.casefold() != "summary.csv"


def test_hostile_file_names_write_inside_out_with_a_summary(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """``...png``, ``..png`` and ``summary.csv.png`` (and a case clash) each get a folder inside --out, and summary.csv is written."""
    folder = tmp_path / "in"
    folder.mkdir()
    names = ["...png", "..png", "summary.csv.png", "Summary.csv.jpg", "a.png", "A.png"]
    for k, name in enumerate(names):
        _png(folder / name, k)
    out = tmp_path / "work" / "out"
    out.parent.mkdir()
    (out.parent / "keep.txt").write_text("a file beside --out")
    assert main(["analyze", str(folder), "--out", str(out), "--samples", "0", "--model", str(tiny_bundle_dir), "--quiet", "--save", "npz,json"]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["keep.txt", "out"]
    assert (out / "summary.csv").is_file()
    rows = _rows(out)
    assert sorted(Path(r["file"]).name for r in rows) == sorted(names)
    assert all(r["status"] == "ok" for r in rows)
    outputs = [r["output"] for r in rows]
    assert len({o.casefold() for o in outputs}) == len(names)
    for output in outputs:
        target = out / output
        assert target.resolve().parent == out.resolve()
        assert (target / "analysis.json").is_file() and (target / "maps.npz").is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted([*outputs, "summary.csv"])


def test_file_name_that_is_not_utf8_is_summarised(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """A file name with a byte that is not UTF-8 gets a clean folder name, and summary.csv stays UTF-8 with the byte as ``\\xe9``."""
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9.png"
    _png(Path(os.fsdecode(raw)))
    out = tmp_path / "out"
    assert main(["analyze", str(folder), "--out", str(out), "--samples", "0", "--model", str(tiny_bundle_dir), "--quiet", "--save", "npz,json"]) == 0
    summary = (out / "summary.csv").read_bytes()
    assert b"caf\\xe9.png" in summary and b"caf\xe9" not in summary
    summary.decode("utf-8")
    assert (out / "caf_" / "analysis.json").is_file()


@pytest.mark.parametrize(
    ("make_out", "says"),
    [
        (lambda tmp: tmp / "a-file", "exists and is not a folder"),
        (lambda tmp: tmp / "a-file" / "sub" / "out", "part of its path is a file"),
        (lambda tmp: tmp / "with-summary-folder", "summary.csv exists and is not a file"),
    ],
)
def test_unusable_out_is_one_clear_line_and_exit_2(make_out: object, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An --out that is a file, lies under a file, or holds a summary.csv folder: one 'error:' line, exit 2, before any model is loaded."""
    assert callable(make_out)
    image = _png(tmp_path / "a.png")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "with-summary-folder" / "summary.csv").mkdir(parents=True)
    out = make_out(tmp_path)
    code = main(["analyze", str(image), "--out", str(out), "--model", str(tmp_path / "no-such-model"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: --out ") and says in err
    assert "Traceback" not in err
