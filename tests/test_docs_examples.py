"""The documented evaluate examples are self-contained: their commands write the labelled data they evaluate (issue 25, item 4).

Each test takes the commands from the Markdown as written (``.venv/bin/python`` becomes this interpreter), runs them in
an empty folder and checks that what they wrote is what the example's evaluate call reads.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main
from app.io.bundle import load_bundle
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.labelled import analyze_labelled

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
PYTHON = ".venv/bin/python "


def bash_lines(page: Path) -> list[str]:
    """The commands of ``page``'s bash blocks, one per line (comments and blank lines left out)."""
    lines = (line.strip() for block in FENCE.findall(page.read_text(encoding="utf-8")) for line in block.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def run_python_line(line: str, cwd: Path) -> None:
    """Run a documented ``.venv/bin/python -c "..."`` line in ``cwd`` with this interpreter and the repository importable."""
    assert line.startswith(PYTHON), line
    argv = [sys.executable, *shlex.split(line[len(PYTHON) :])]
    subprocess.run(argv, cwd=cwd, check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)


def _line(lines: list[str], *needles: str) -> str:
    found = [line for line in lines if all(n in line for n in needles)]
    assert len(found) == 1, (needles, found)
    return found[0]


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "docs" / "api.md"], ids=lambda p: p.name)
def test_the_evaluate_curl_example_first_writes_its_scene_and_mask(page: Path, tmp_path: Path) -> None:
    """The python line before the curl line writes the two files the curl uploads, and they evaluate: the mask is the
    image's size, single-channel, holds class indices and the ``ood_label`` it passes."""
    lines = bash_lines(page)
    curl = _line(lines, "curl ", "/api/v1/evaluate")
    make = lines[lines.index(curl) - 1]
    assert "make_scene" in make
    run_python_line(make, tmp_path)
    fields = dict(re.findall(r"-F (\w+)=@?(\S+)", curl))
    image, mask = (tmp_path / fields["file"]).read_bytes(), (tmp_path / fields["mask"]).read_bytes()
    bundle = load_bundle("default", torch.device("cpu"))
    labelled = analyze_labelled(Analyzer(bundle, torch.device("cpu")), image, mask, AnalysisRequest(samples=2))
    labels = np.unique(labelled.mask)
    assert int(fields["ood_label"]) in labels
    assert set(labels.tolist()) - {int(fields["ood_label"])} <= set(range(len(bundle.card.classes)))
    assert labelled.mask.shape == labelled.analysis.prediction.shape


def test_the_evaluate_command_example_first_writes_its_split(tmp_path: Path) -> None:
    """docs/evaluation.md: the python line writes the folders the evaluate line names, and evaluate runs on them
    (with 2 MC samples instead of the default 20, to be quick) and scores the OOD label it passes."""
    lines = bash_lines(ROOT / "docs" / "evaluation.md")
    evaluate = _line(lines, "seg-uncertainty evaluate", "scenes/")
    run_python_line(lines[lines.index(evaluate) - 1], tmp_path)
    args = shlex.split(evaluate)[1:]
    assert args[0] == "evaluate"
    resolved = [str(tmp_path / a) if k and args[k - 1] in ("--images", "--masks", "--out") else a for k, a in enumerate(args)]
    for option in ("--images", "--masks"):
        folder = Path(resolved[resolved.index(option) + 1])
        assert len(list(folder.glob("*.png"))) == 20, folder
    assert main([*resolved, "--samples", "2"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 20
    assert metrics["ood_detection"], "the OOD pixels (label 255) were scored"
