"""The ``seg-uncertainty`` command line, run in-process and as a real subprocess."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.io.rendering import colour_lut
from app.maps.registry import MAP_NAMES, get_map
from app.workflows.analyse_folder import expand_inputs


def _write_png(path: Path, h: int, w: int, seed: int) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    _write_png(folder / "a.png", 24, 40, 1)
    _write_png(folder / "b.png", 17, 9, 2)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (folder / "notes.txt").write_text("not an image and not picked from a folder")
    return folder


def test_folder_with_one_corrupt_file_writes_the_rest_and_fails(image_folder: Path, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["analyze", str(image_folder), "--out", str(out), "--samples", "3", "--model", str(tiny_bundle_dir), "--quiet", "--save", "npz,json"])
    assert code == 1
    with (out / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    status = {Path(r["file"]).name: r["status"] for r in rows}
    assert status == {"a.png": "ok", "b.png": "ok", "broken.png": "failed"}
    broken = next(r for r in rows if r["status"] == "failed")
    assert broken["error"]
    for name, (h, w) in {"a": (24, 40), "b": (17, 9)}.items():
        folder = out / name
        for key in ("prediction", *MAP_NAMES):
            with Image.open(folder / f"{key}.png") as img:  # the map at the top left, its legend below (tests/test_legend.py)
                assert img.size[0] >= w and img.size[1] > h
        npz = _load(folder / "maps.npz")
        assert set(npz) == {*MAP_NAMES, "prediction"}  # the (C, H, W) arrays only with --save
        assert npz["prediction"].shape == (h, w) and npz["prediction"].dtype == np.uint8
        info = json.loads((folder / "analysis.json").read_text())
        assert info["npz"] == {k: str(v.dtype) for k, v in npz.items()}
        assert (info["width"], info["height"], info["samples"]) == (w, h, 3)
        assert {"decode", "inference", "total"} <= set(info["timings"])
        assert info["regions"][0]["kind"] == "class"
        row = next(r for r in rows if r["output"] == name)
        # the file's entropy is float16: each value within 2^-11 of itself (relative), so its mean is too
        assert float(row["mean_entropy"]) == pytest.approx(float(npz["entropy"].astype(np.float64).mean()), rel=2**-11, abs=2**-25)
    assert not (out / "broken").exists()


def test_pngs_use_the_fixed_scale(image_folder: Path, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    main(["analyze", str(image_folder / "a.png"), "--out", str(out), "--samples", "2", "--model", str(tiny_bundle_dir), "--quiet"])
    npz = _load(out / "a" / "maps.npz")
    with Image.open(out / "a" / "entropy.png") as img:
        assert img.mode == "P"  # a palette PNG: the colour table's entries, decoded to its colours
        png = np.asarray(img.convert("RGB"))[: npz["entropy"].shape[0], : npz["entropy"].shape[1]]  # the map, not its legend
    # the PNG is drawn from the float32 map, the file holds it as float16 (within 2^-11 relative): the colour entry may
    # differ by one step where the value lies near the boundary between two entries
    t = np.clip(npz["entropy"].astype(np.float64) / np.log(3), 0, 1) ** get_map("entropy").display_power
    index = np.rint(t * 255).astype(int)
    lut = colour_lut("inferno").astype(int)
    matches = [np.all(png == lut[np.clip(index + step, 0, 255)], axis=-1) for step in (0, -1, 1)]
    assert np.all(np.any(matches, axis=0))
    assert matches[0].mean() > 0.9


def _scene(path: Path) -> Path:
    """A 64x96 synthetic test scene (shapes on a textured background) as PNG."""
    from app.io.synthetic import iter_split

    Image.fromarray(np.ascontiguousarray(next(iter_split("test", 1, size=96, seed=3)).image[:64])).save(path)
    return path


def test_save_brings_back_the_class_arrays_exactly_as_float32(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """``--save probs`` adds ``probs`` alone; ``--save all`` adds the three (C, H, W) arrays, equal to the analysis's own float32 arrays."""
    from app.cli.common import load_analyzer
    from app.request import AnalysisRequest

    scene = _scene(tmp_path / "scene.png")
    common = ["analyze", str(scene), "--samples", "3", "--seed", "4", "--model", str(tiny_bundle_dir), "--quiet"]
    assert main([*common, "--out", str(tmp_path / "probs"), "--save", "probs"]) == 0
    assert main([*common, "--out", str(tmp_path / "all"), "--save", "all"]) == 0
    assert set(_load(tmp_path / "probs" / "scene" / "maps.npz")) == {*MAP_NAMES, "prediction", "probs"}
    npz = _load(tmp_path / "all" / "scene" / "maps.npz")
    analysis = load_analyzer(str(tiny_bundle_dir), "cpu").analyze_bytes(scene.read_bytes(), AnalysisRequest(samples=3, seed=4))
    for name in ("probs", "mean_probs", "class_variance"):
        assert npz[name].dtype == np.float32 and npz[name].shape == (3, 64, 96)
        np.testing.assert_array_equal(npz[name], getattr(analysis, name))
    assert float(analysis.class_variance.max()) > 0  # not trivially zeros
    info = json.loads((tmp_path / "all" / "scene" / "analysis.json").read_text())
    assert info["npz"]["probs"] == "float32" and info["npz"]["entropy"] == "float16"


def test_the_default_npz_is_within_its_bytes_per_pixel(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """Uncompressed, the default layout is 15 bytes per pixel (five float16 maps, float32 feature_distance, uint8 labels); deflated it
    is no larger, plus at most 512 bytes of headers per array. ``--save all`` adds 3 x C x 4 = 36 bytes per pixel (C = 3)."""
    scene = _scene(tmp_path / "scene.png")
    common = ["analyze", str(scene), "--samples", "3", "--model", str(tiny_bundle_dir), "--quiet"]
    assert main([*common, "--out", str(tmp_path / "default")]) == 0
    assert main([*common, "--out", str(tmp_path / "all"), "--save", "all"]) == 0
    pixels, members = 64 * 96, len(MAP_NAMES) + 1
    assert 5 * 2 + 4 + 1 == 15 and len(MAP_NAMES) == 6
    default = (tmp_path / "default" / "scene" / "maps.npz").stat().st_size
    assert default <= 15 * pixels + 512 * members
    full = (tmp_path / "all" / "scene" / "maps.npz").stat().st_size
    assert full > default + 36 * pixels * 0.5  # the class arrays are there (probabilities deflate by less than half)


def test_an_unknown_save_name_is_a_usage_error(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["analyze", str(image_folder / "a.png"), "--out", str(tmp_path / "o"), "--save", "probs,variances", "--quiet"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--save: unknown output 'variances'" in err and "png, npz, json, probs, mean_probs, class_variance, all" in err
    assert not (tmp_path / "o").exists()


def test_globs_and_missing_paths(image_folder: Path, tmp_path: Path) -> None:
    files, missing = expand_inputs([str(image_folder / "*.png"), str(tmp_path / "nope.png"), str(image_folder / "a.png")])
    assert sorted(p.name for p in files) == ["a.png", "b.png", "broken.png"]
    assert missing == [str(tmp_path / "nope.png")]


def test_bad_model_is_a_clear_error(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", str(image_folder / "a.png"), "--out", str(tmp_path / "o"), "--model", str(tmp_path / "nomodel"), "--quiet"])
    assert code == 2
    assert "no model bundle" in capsys.readouterr().err


def test_negative_samples_rejected(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(image_folder), "--out", str(tmp_path / "o"), "--samples", "-1", "--quiet"]) == 2
    assert "--samples" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_runs_as_a_process(image_folder: Path, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "app", "analyze", str(image_folder / "b.png"), "--out", str(out), "--samples", "0", "--model", str(tiny_bundle_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "analyze" in proc.stderr
    npz = _load(out / "b" / "maps.npz")
    assert np.all(npz["mutual_information"] == 0)
    assert "mean_probs" not in npz and "probs" not in npz


def test_help_does_not_import_torch() -> None:
    """Building the parser (and so ``--help``) imports neither torch nor smp, so it starts at once."""
    code = "import sys, app.cli; app.cli.build_parser(); print(sorted(m for m in ('torch', 'segmentation_models_pytorch', 'fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_summary_reports_sizes_and_the_image_level_verdict(tmp_path: Path) -> None:
    """With the default model (which holds a validation reference) a photo is flagged and a test scene is not, in summary.csv."""
    from skimage import data

    from app.io.synthetic import make_scene

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(data.coffee()).save(folder / "coffee.jpg", quality=90)
    Image.fromarray(make_scene("test", 11, size=128).image).save(folder / "scene.png")
    out = tmp_path / "out"
    assert main(["analyze", str(folder), "--out", str(out), "--quiet"]) == 0
    with (out / "summary.csv").open() as fh:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(fh)}
    photo, scene = rows["coffee.jpg"], rows["scene.png"]
    assert (photo["input_width"], photo["input_height"], photo["width"], photo["height"], photo["resolution"]) == ("600", "400", "256", "171", "working")
    assert (scene["width"], scene["resolution"]) == ("128", "full")
    maps = ("confidence", "entropy", "variance", "mutual_information")
    assert photo["unusual"] == "yes" and photo["image_check"] == "unusual" and float(photo["p_value"]) <= 0.01
    assert max(float(photo[f"percentile_{m}"]) for m in maps) >= 99
    assert scene["unusual"] == "no" and scene["image_check"] == "not_flagged" and float(scene["p_value"]) > 0.01


def test_every_option_of_every_command_explains_itself() -> None:
    """``--help`` of each command has a text for every option (an option added without ``help=`` fails here)."""
    import argparse

    from app.cli import build_parser

    missing = []
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, parser in action.choices.items():
                missing += [f"{command} {a.option_strings[-1]}" for a in parser._actions if a.option_strings and not (a.help or "").strip()]
    assert missing == []


def test_threads_sets_pytorch_threads_for_the_run_records_them_and_restores_them(image_folder: Path, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    out = tmp_path / "out"
    code = main(["analyze", str(image_folder / "a.png"), "--out", str(out), "--samples", "2", "--model", str(tiny_bundle_dir), "--threads", "3", "--quiet"])
    assert code == 0
    assert json.loads((out / "a" / "analysis.json").read_text())["threads"] == 3
    assert torch.get_num_threads() == before
    default = tmp_path / "default"
    assert main(["analyze", str(image_folder / "a.png"), "--out", str(default), "--samples", "2", "--model", str(tiny_bundle_dir), "--quiet"]) == 0
    assert json.loads((default / "a" / "analysis.json").read_text())["threads"] == 1


def test_negative_threads_is_a_usage_error(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(image_folder), "--out", str(tmp_path / "out"), "--threads", "-1", "--quiet"]) == 2
    assert "--threads must be >= 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512M", 512 * 2**20),
        ("1G", 2**30),
        ("1.5g", 3 * 2**29),
        ("256MiB", 256 * 2**20),
        ("300mb", 300 * 2**20),
        (" 64 M ", 64 * 2**20),
        ("1048576", 2**20),
        ("2097152B", 2**21),
    ],
)
def test_a_memory_size_is_bytes_or_a_binary_unit(text: str, expected: int) -> None:
    from app.cli.common import memory_size

    assert memory_size(text) == expected


@pytest.mark.parametrize("text", ["abc", "0", "-5M", "1K", "1e9", "inf", "M", "12X", "2048G", "2000000IB", "5MM"])
def test_a_bad_memory_budget_is_a_usage_error_naming_the_forms(text: str, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", str(image_folder), "--out", str(tmp_path / "out"), f"--memory-budget={text}", "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--memory-budget" in err and "K, M or G" in err and repr(text) in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("choice", "images", "expected"),
    [("auto", 1, False), ("auto", 119, False), ("auto", 120, True), ("auto", 5000, True), ("yes", 1, True), ("no", 5000, False)],
)
def test_kernels_compile_only_when_asked_or_when_the_run_is_long_enough_to_pay(choice: str, images: int, expected: bool) -> None:
    from app.cli.analyze import COMPILE_MIN_IMAGES, compiles

    assert COMPILE_MIN_IMAGES == 120
    assert compiles(choice, images) is expected


@pytest.mark.parametrize(("flag", "expected"), [([], False), (["--compile-kernels", "yes"], True), (["--compile-kernels", "no"], False)])
def test_the_commands_compile_setting_holds_during_the_run_and_is_restored_after(
    flag: list[str], expected: bool, image_folder: Path, tiny_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.engine.compiled as compiled
    import app.workflows.analyse_folder as analyse_folder

    monkeypatch.setattr(compiled, "_enabled", not expected)
    during: list[bool] = []
    analyse = analyse_folder.analyse_files

    def spy(*args: object, **kwargs: object) -> object:
        during.append(compiled.compilation_enabled())
        return analyse(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(analyse_folder, "analyse_files", spy)
    args = ["analyze", str(image_folder / "a.png"), "--out", str(tmp_path / "out"), "--samples", "0", "--model", str(tiny_bundle_dir), "--quiet", *flag]
    assert main(args) == 0
    assert during == [expected]
    assert compiled.compilation_enabled() is (not expected)
