"""``rank``: order, batch, outputs, resuming, errors; and the issue's bar on the shipped default model."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from label_studio_converter.brush import decode_rle
from PIL import Image

from app.cli import main
from app.engine.cancel import AnalysisCancelled, CancelToken
from app.io.bundle import load_bundle
from app.io.synthetic import make_scene
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.ranking import analyse_records


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for i in range(6):
        scene = make_scene("test" if i % 2 else "shifted", i, size=48 + 8 * i)
        Image.fromarray(scene.image).save(root / ("sub" if i == 5 else "") / f"img_{i}.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "ranking.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_rank_orders_by_the_score_writes_the_gallery_and_the_batch_tasks(folder: Path, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["rank", str(folder), "--out", str(out), "--model", str(tiny_bundle_dir), "--samples", "4", "--budget", "3", "--by", "entropy", "--quiet"])
    assert code == 1
    rows = _rows(out)
    assert len(rows) == 7 and rows[-1]["file"] == "broken.png" and rows[-1]["status"] == "failed" and rows[-1]["rank"] == ""
    ok = rows[:-1]
    scores = [float(r["score"]) for r in ok]
    assert scores == sorted(scores, reverse=True) and [r["rank"] for r in ok] == [str(i) for i in range(1, 7)]
    assert [r["batch"] for r in ok] == ["1", "2", "3", "", "", ""]
    assert all(float(r["score"]) == float(r["mean_entropy"]) for r in ok)
    assert "sub/img_5.png" in {r["file"] for r in ok}

    analyzer = Analyzer(load_bundle(str(tiny_bundle_dir)))
    top = folder / ok[0]["file"]
    reference = analyzer.analyze_bytes(top.read_bytes(), AnalysisRequest(samples=4, class_arrays=False))
    assert float(ok[0]["score"]) == pytest.approx(float(np.mean(reference.maps["entropy"], dtype=np.float64)), rel=1e-5)

    page = (out / "gallery.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 3 * 6 and "http" not in page.replace("http-equiv", "")
    assert page.index(ok[0]["file"]) < page.index(ok[1]["file"]) < page.index(ok[5]["file"])
    assert "not analysed" in page

    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    assert [t["data"]["file"] for t in tasks] == [r["file"] for r in ok[:3]]
    first = tasks[0]
    assert first["data"]["image"] == f"/data/local-files/?d={ok[0]['file']}"
    with Image.open(top) as image:
        width, height = image.size
    labels = np.zeros((height, width), np.int64) - 1
    names = [c.name for c in analyzer.bundle.card.classes]
    for result in first["predictions"][0]["result"]:
        assert (result["original_width"], result["original_height"]) == (width, height)
        mask = np.asarray(decode_rle(result["value"]["rle"])).reshape(height, width, 4)[..., 3] == 255
        assert (labels[mask] == -1).all()
        labels[mask] = names.index(result["value"]["brushlabels"][0])
    assert (labels >= 0).all()
    assert np.array_equal(labels, reference.prediction)
    assert (out / "label_studio_config.xml").read_text().count("<Label ") == len(names)


def test_an_interrupted_run_continues_where_it_stopped(folder: Path, tiny_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    analyzer = Analyzer(load_bundle(str(tiny_bundle_dir)))
    files = sorted(p for p in folder.rglob("img_*.png"))
    token = CancelToken()
    done = []
    with pytest.raises(AnalysisCancelled):
        for record, reused in analyse_records(analyzer, files, out, AnalysisRequest(samples=2, class_arrays=False), cancel=token):
            done.append((record.file, reused))
            if len(done) == 3:
                token.cancel("test")
    assert len(done) == 3 and not any(reused for _, reused in done)
    os.utime(files[0], ns=(files[0].stat().st_atime_ns, files[0].stat().st_mtime_ns + 10**9))
    capsys.readouterr()
    code = main(["rank", *map(str, files), "--out", str(out), "--model", str(tiny_bundle_dir), "--samples", "2", "--quiet"])
    assert code == 0
    assert "(2 from an earlier run)" in capsys.readouterr().err
    code = main(["rank", *map(str, files), "--out", str(out), "--model", str(tiny_bundle_dir), "--samples", "2", "--by", "entropy", "--diverse", "--quiet"])
    assert code == 0
    assert "(6 from an earlier run)" in capsys.readouterr().err, "another --by and a diverse batch reuse the analyses"
    thumb = next((out / "thumbs").glob("*_input.png"))
    thumb.unlink()
    code = main(["rank", *map(str, files), "--out", str(out), "--model", str(tiny_bundle_dir), "--samples", "2", "--quiet"])
    assert code == 0
    assert "(5 from an earlier run)" in capsys.readouterr().err, "a record whose thumbnail is gone is analysed again"
    code = main(["rank", *map(str, files), "--out", str(out), "--model", str(tiny_bundle_dir), "--samples", "3", "--quiet"])
    assert code == 0
    assert "earlier run" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "words"),
    [(["--by", "nonsense"], "unknown map 'nonsense'"), (["--budget", "0"], "--budget must be >= 1"), (["--by", "feature_distance"], "cannot compute")],
)
def test_usage_errors_name_the_problem(
    folder: Path, tiny_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    code = main(["rank", str(folder), "--out", str(tmp_path / "o"), "--model", str(tiny_bundle_dir), "--quiet", *extra])
    assert code == 2
    assert words in capsys.readouterr().err


def test_feature_distance_puts_shifted_scenes_first_on_the_default_model(tmp_path: Path) -> None:
    root = tmp_path / "scenes"
    root.mkdir()
    for i in range(15):
        Image.fromarray(make_scene("test", i, size=128).image).save(root / f"clean_{i:02d}.png")
        Image.fromarray(make_scene("shifted", i, size=128).image).save(root / f"shifted_{i:02d}.png")
    out = tmp_path / "out"
    assert main(["rank", str(root), "--out", str(out), "--by", "feature_distance", "--budget", "10", "--samples", "0", "--quiet"]) == 0
    top = [r["file"] for r in _rows(out)[:10]]
    assert sum(name.startswith("shifted") for name in top) >= 8, top
    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    assert len(tasks) == 10 and all(t["predictions"][0]["result"] for t in tasks)


def test_odd_names_an_output_inside_the_folder_and_an_ensemble(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    names = ["R&D #1+a.png", "<b>x.png", os.fsdecode(b"caf\xe9.png")]
    for i, name in enumerate(names):
        Image.fromarray(make_scene("test", i, size=64).image).save(root / name)
    out = root / "ranked"
    args = ["rank", str(root), "--out", str(out), "--model", "ensemble", "--samples", "0", "--budget", "3", "--diverse", "--quiet"]
    assert main(args) == 0
    assert main(args) == 0
    assert "(3 from an earlier run)" in capsys.readouterr().err, "the run's own thumbnails under --out are not ranked"
    rows = _rows(out)
    assert sorted(r["file"] for r in rows) == sorted(["R&D #1+a.png", "<b>x.png", "caf\\xe9.png"])
    page = (out / "gallery.html").read_text(encoding="utf-8")
    assert "&lt;b&gt;x.png" in page and "<b>x.png" not in page
    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    images = {t["data"]["file"]: t["data"]["image"] for t in tasks}
    assert images["R&D #1+a.png"] == "/data/local-files/?d=R%26D%20%231%2Ba.png"
    assert len(tasks) == 3 and all(len(t["predictions"][0]["result"]) >= 1 for t in tasks)
