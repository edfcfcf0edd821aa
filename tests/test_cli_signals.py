"""SIGINT and SIGTERM during ``analyze``: the run stops, summary.csv lists the finished images, exit 130, no traceback; a
signal during a long decode stops it within about a second."""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hostile_corpus import progressive_scan_bomb
from PIL import Image

from app.cli import main
from app.workflows.analyzer import Analyzer


def _images(folder: Path, count: int, side: int = 32) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = [folder / f"img{k:03d}.png" for k in range(count)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    return paths


def _check_outputs(out: Path, finished: int) -> list[dict[str, str]]:
    """summary.csv has exactly ``finished`` rows, all done, each with a complete folder; no other folder, no staging leftovers."""
    with (out / "summary.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == finished
    assert all(r["status"] == "ok" for r in rows)
    for row in rows:
        assert (out / row["output"] / "analysis.json").is_file() and (out / row["output"] / "maps.npz").is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted([*(r["output"] for r in rows), "summary.csv"])
    return rows


def _signal_on_call(monkeypatch: pytest.MonkeyPatch, call: int, signals: list[signal.Signals]) -> None:
    """Make the ``call``-th analysis raise ``signals`` in this process just before it starts computing."""
    original: Callable[..., object] = Analyzer.analyze_bytes
    calls = [0]

    def analyze_bytes(self: Analyzer, *args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == call:
            for sig in signals:
                signal.raise_signal(sig)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Analyzer, "analyze_bytes", analyze_bytes)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_drops_the_current_image_and_writes_the_summary(
    sig: signal.Signals, tiny_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A signal during the third image cancels it: two rows, two folders, one 'interrupted' line, exit 130; handlers restored."""
    _images(tmp_path / "in", 5)
    _signal_on_call(monkeypatch, 3, [sig])
    before = signal.getsignal(sig)
    out = tmp_path / "out"
    code = main(["analyze", str(tmp_path / "in"), "--out", str(out), "--samples", "4", "--model", str(tiny_bundle_dir), "--quiet", "--save", "all"])
    assert code == 130
    _check_outputs(out, 2)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"interrupted by {sig.name}" in err and "analysed 2 of 5" in err
    assert signal.getsignal(sig) is before


def test_second_signal_stops_at_once(tiny_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Two signals: no wait for a cancellation point, and still a summary of what finished."""
    _images(tmp_path / "in", 4)
    _signal_on_call(monkeypatch, 2, [signal.SIGINT, signal.SIGINT])
    out = tmp_path / "out"
    code = main(["analyze", str(tmp_path / "in"), "--out", str(out), "--samples", "4", "--model", str(tiny_bundle_dir), "--quiet", "--save", "all"])
    assert code == 130
    _check_outputs(out, 1)
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_a_real_process(sig: signal.Signals, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """``python -m app analyze`` gets a signal once its first output folder appears: exit 130, no traceback, the finished rows summarised."""
    total = 30
    _images(tmp_path / "in", total, side=128)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "app", "analyze", str(tmp_path / "in"), "--out", str(out), "--samples", "32", "--save", "all"]
    command += ["--model", str(tiny_bundle_dir), "--device", "cpu"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 240
        while not (out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir())):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"interrupted by {sig.name}" in err.splitlines()[-1]
    done = re.search(r"analysed (\d+) of (\d+)", err)
    assert done is not None and int(done.group(2)) == total, err
    finished = int(done.group(1))
    assert 0 < finished < total, "the signal came after the first image and well before the last"
    _check_outputs(out, finished)


STOP_DECODE_SECONDS = 2.0
INSTRUMENTED = """
import sys
import app.io.cancellable_read as reader
import app.io.containers as containers
from app.cli import main

containers.MAX_JPEG_SCANS = 5000
loading = reader.CancellableReader.loading

def announced(self):
    print("decoding", file=sys.stderr, flush=True)
    return loading(self)

reader.CancellableReader.loading = announced
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_the_first_signal_stops_a_long_decode_within_a_second(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """A real process decoding the 1000-scan JPEG (22 s inside libjpeg, let past the scan cap; a signal handler alone would wait
    for all of it): the first SIGINT stops it within about a second, with summary.csv written (no row) and no traceback."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_bomb.jpg").write_bytes(progressive_scan_bomb(6000, 6000, 1000))
    _images(tmp_path / "more", 1)
    out = tmp_path / "out"
    command = [sys.executable, "-c", INSTRUMENTED, "analyze", str(folder), str(tmp_path / "more"), "--out", str(out), "--save", "all"]
    command += ["--model", str(tiny_bundle_dir), "--device", "cpu", "--quiet", "--max-pixels", "40000000"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        assert proc.stderr.readline().strip() == "decoding", proc.stderr.read()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        _, err = proc.communicate(timeout=60)
        stopped = time.monotonic() - signalled
    assert proc.returncode == 130, err
    assert stopped < STOP_DECODE_SECONDS, stopped
    assert "Traceback" not in err and "interrupted by SIGINT: analysed 0 of 2 images" in err
    _check_outputs(out, 0)
