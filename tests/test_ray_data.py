"""``analyze --ray`` (app/workflows/ray_folder.py): a folder analysed on a Ray Data actor pool gives the local CLI's outputs.

The command starts a local Ray and stops it before it returns; no Ray process may be left.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rayutil import assert_ray_gone, ray_processes

from app.cli import main

# Ray's own modules use APIs their dependencies deprecate (pydantic's Field(**extra), say).
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]

TIMED = {"analysis.json": "timings", "summary.csv": "seconds"}


def _folder(root: Path) -> Path:
    """Five images of different sizes (one in a subfolder, two with the same stem) and a file that is no image."""
    rng = np.random.default_rng(0)
    folder = root / "images"
    (folder / "sub").mkdir(parents=True)
    for i, (name, height) in enumerate((("a.png", 40), ("b.jpg", 56), ("c.png", 64), ("sub/a.png", 48), ("sub/d.png", 72))):
        small = rng.integers(0, 256, size=(height // 8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((64 + 8 * i, height), Image.Resampling.BILINEAR).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _untimed(name: str, data: bytes) -> object:
    """A file's content without what depends on how long the analysis took and on the threads it ran with."""
    if name.endswith("analysis.json"):
        info = json.loads(data)
        del info["timings"]
        info.pop("threads", None)
        return info
    if name == "summary.csv":
        rows = list(csv.DictReader(io.StringIO(data.decode())))
        for row in rows:
            assert row.pop("seconds") != "" or row["status"] == "failed"
        return rows
    return data


def test_ray_data_analysis_writes_the_local_cli_outputs(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """Same files, byte for byte (PNGs, NPZ), same JSON and summary apart from timings, the same exit status (1: an input
    failed); and Ray is gone when the command returns."""
    folder = _folder(tmp_path)
    common = [str(folder), "--model", str(tiny_bundle_dir), "--device", "cpu", "--samples", "4", "--seed", "5", "--min-area", "4", "--quiet", "--save", "all"]
    assert main(["analyze", *common, "--out", str(tmp_path / "local")]) == 1
    before = ray_processes()
    assert main(["analyze", *common, "--out", str(tmp_path / "ray"), "--ray", "--actors", "2"]) == 1
    assert_ray_gone(before)
    local, on_ray = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert sorted(on_ray) == sorted(local)
    assert {name.split("/")[0] for name in local} == {"a", "a_2", "b", "c", "d", "summary.csv"}
    for name, data in local.items():
        assert _untimed(name, on_ray[name]) == _untimed(name, data), name
    statuses = [row["status"] for row in csv.DictReader(io.StringIO(on_ray["summary.csv"].decode()))]
    assert statuses == ["ok", "ok", "failed", "ok", "ok", "ok"]


def test_analyze_on_ray_refuses_bad_counts_before_starting_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["analyze", str(image), "--out", str(tmp_path / "out"), "--ray", "--actors", "0"]) == 2
    assert "--actors must be >= 1" in capsys.readouterr().err
    assert main(["analyze", str(image), "--out", str(tmp_path / "out"), "--ray", "--cpus-per-actor", "-0.5"]) == 2
    assert "--cpus-per-actor must be >= 0" in capsys.readouterr().err


def test_each_actor_analyses_within_the_commands_memory_budget_and_compile_setting(tiny_bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--memory-budget`` and ``--compile-kernels`` reach every actor: the pool's constructor arguments build its analyser
    and set its process's compilation (no Ray needed to build one)."""
    import app.engine.compiled as compiled
    from app.request import AnalysisRequest
    from app.workflows.outputs import FILE_DEFAULT
    from app.workflows.ray_folder import ActorOptions, _AnalyseRow, actor_arguments

    monkeypatch.setattr(compiled, "_enabled", compiled.compilation_enabled())  # the actor sets it process-wide: restored after
    for budget, compile_kernels in ((3 * 2**20, False), (ActorOptions().memory_budget, True)):
        options = ActorOptions(memory_budget=budget, compile_kernels=compile_kernels)
        arguments = actor_arguments(str(tiny_bundle_dir), "cpu", 10**6, AnalysisRequest(), FILE_DEFAULT, options)
        assert _AnalyseRow(**arguments).analyzer.memory_budget == budget
        assert compiled.compilation_enabled() is compile_kernels
