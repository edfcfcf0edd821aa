"""``summary.csv`` and ``analysis.json`` are valid UTF-8 whatever the input file names' bytes (issue 20, item 8), and a name
written with ``\\xNN`` escapes leads back to the file."""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.workflows.analyse_folder import SummaryRow, write_summary
from app.workflows.output_folder import utf8_name


def _png(path: Path, seed: int = 0) -> None:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(path, format="PNG")


def _analyze(folder: Path, out: Path, model: Path) -> list[dict[str, str]]:
    assert main(["analyze", str(folder), "--out", str(out), "--samples", "0", "--model", str(model), "--quiet", "--save", "json"]) == 0
    text = (out / "summary.csv").read_bytes().decode("utf-8")  # strict: fails on any byte that is not UTF-8
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.fixture
def odd_names(tmp_path: Path) -> tuple[Path, dict[bytes, str]]:
    """Files whose names are not UTF-8 (one with a backslash), beside a UTF-8 one; their expected ``file`` column endings."""
    folder = tmp_path / "in"
    folder.mkdir()
    names = {b"\xff.png": "\\xff.png", b"caf\xe9 \\ x.png": "caf\\xe9 \\\\ x.png", "café.png".encode(): "café.png"}
    for seed, raw in enumerate(names):
        _png(Path(os.fsdecode(os.fsencode(folder) + b"/" + raw)), seed)
    return folder, names


def test_summary_is_utf8_and_each_name_leads_back_to_its_file(odd_names: tuple[Path, dict[bytes, str]], tiny_bundle_dir: Path, tmp_path: Path) -> None:
    folder, names = odd_names
    out = tmp_path / "out"
    rows = _analyze(folder, out, tiny_bundle_dir)
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    written = sorted(r["file"].rsplit("/", 1)[-1] for r in rows)
    assert written == sorted(names.values())
    for row in rows:
        real = Path(os.fsdecode(codecs.escape_decode(row["file"])[0])) if "\\" in row["file"] else Path(row["file"])
        assert real.is_file() and real.parent == folder.resolve()
        assert os.fsencode(real.name) in names
        report = json.loads((out / row["output"] / "analysis.json").read_bytes().decode("utf-8"))
        assert report["source"] == row["file"]


def test_the_escaped_name_is_what_bash_printf_gives_back(odd_names: tuple[Path, dict[bytes, str]]) -> None:
    _, names = odd_names
    for raw, text in names.items():
        if "\\" in text:
            printed = subprocess.run(["bash", "-c", 'printf "%b" "$1"', "-", text], capture_output=True, check=True).stdout
            assert printed == raw


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("plain/café.png", "plain/café.png"),
        ("a\\b.png", "a\\b.png"),
        (os.fsdecode(b"\xff\xfe.png"), "\\xff\\xfe.png"),
        (os.fsdecode(b"a\\b\xe9.png"), "a\\\\b\\xe9.png"),
        (os.fsdecode(b"\xc3\xa9\xc3.png"), "é\\xc3.png"),
        ("\ud800.png", "\\ud800.png"),
    ],
)
def test_utf8_name(name: str, text: str) -> None:
    assert utf8_name(name) == text
    text.encode("utf-8")


def test_a_failed_rows_error_is_utf8_too(tmp_path: Path) -> None:
    name = os.fsdecode(b"/data/\xff.png")
    write_summary(tmp_path / "summary.csv", [SummaryRow(file=name, output="_", status="failed", error=f"cannot read {name}")])
    row = next(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_bytes().decode("utf-8"), newline="")))
    assert row["file"] == "/data/\\xff.png" and row["error"] == "cannot read /data/\\xff.png"
