"""Counts in messages agree with their noun: ``1 image``, ``2 images`` (issue 25, item 6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.io.bundle import ClassInfo, ModelCard
from app.plural import plural, word_for
from app.web.admission import Admission


@pytest.mark.parametrize(
    ("count", "word", "many", "expected"),
    [
        (1, "image", None, "1 image"),
        (2, "image", None, "2 images"),
        (0, "image", None, "0 images"),
        (1, "analysis", "analyses", "1 analysis"),
        (2, "analysis", "analyses", "2 analyses"),
        (-1, "pixel", None, "-1 pixel"),
    ],
)
def test_plural_agrees_with_the_count(count: int, word: str, many: str | None, expected: str) -> None:
    assert plural(count, word, many) == expected


def test_thousands_and_verbs() -> None:
    assert plural(1024, "pixel", thousands=True) == "1,024 pixels"
    assert [word_for(n, "is", "are") for n in (1, 2)] == ["is", "are"]


@pytest.mark.parametrize(("images", "says"), [(1, "analysed 1 of 1 image into"), (2, "analysed 2 of 2 images into")])
def test_analyze_counts_its_images(images: int, says: str, tiny_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(images):
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    assert main(["analyze", str(folder), "--out", str(tmp_path / "out"), "--samples", "0", "--model", str(tiny_bundle_dir), "--quiet"]) == 0
    assert says in capsys.readouterr().err


@pytest.mark.parametrize(("running", "says"), [(1, "1 analysis running"), (2, "2 analyses running")])
def test_the_busy_message_counts_analyses(running: int, says: str) -> None:
    admission = Admission(max_concurrent=2, max_queue=0, max_work=10)
    admission.running = running
    assert admission.busy_message().startswith(f"the server is busy: {says} and")


@pytest.mark.parametrize(("listed", "says"), [(2, "but 2 classes are listed"), (4, "but 4 classes are listed")])  # a card lists at least 2
def test_a_card_counts_its_classes(listed: int, says: str) -> None:
    classes = [ClassInfo(name=f"c{k}", colour="#000000") for k in range(listed)]
    with pytest.raises(ValueError, match=says):
        ModelCard(
            name="x",
            architecture={"arch": "unet", "encoder_name": "mobilenet_v2", "encoder_depth": 3, "decoder_channels": [16, 8, 8], "classes": 3},
            classes=classes,
        )
