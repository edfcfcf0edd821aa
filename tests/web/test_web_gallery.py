"""Many images in the page: a chosen folder's images (others skipped) as a gallery sorted by a map's image mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from webutil import random_png

pytestmark = pytest.mark.browser

ORDER = "() => [...document.querySelectorAll('#thumbs li')].map((li) => li.querySelector('.name').textContent)"


def test_a_folder_fills_a_gallery_sorted_by_the_chosen_score(page: Any, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    names = []
    for i in range(5):
        name = f"img_{i}.png"
        (folder / ("more" if i == 4 else "") / name).write_bytes(random_png(32 + 4 * i, 40, seed=60 + i))
        names.append(name)
    (folder / "notes.txt").write_text("not an image")
    answers: list[dict[str, float]] = []

    def record(response: Any) -> None:
        if "/api/v1/analyze" in response.url and response.status == 200:
            answers.append({m["name"]: m["mean"] for m in response.json()["maps"]})

    page.on("response", record)
    page.set_input_files("#folder-input", str(folder))
    page.wait_for_function("() => document.querySelectorAll('#thumbs button[data-status=\"done\"]').length === 5", timeout=90_000)
    assert page.is_visible("#gallery-bar")
    assert page.inner_text("#gallery-bar .gallery-count") == "5 of 5 analysed"
    assert sorted(page.evaluate(ORDER)) == names, "the text file is skipped"
    assert page.evaluate(ORDER) == names, "upload order (by path) by default"
    means = dict(zip(names, answers, strict=True))  # analysed one after the other, in upload order

    page.select_option("#sort-by", "entropy")
    expected = sorted(names, key=lambda n: -means[n]["entropy"])
    assert page.evaluate(ORDER) == expected
    page.select_option("#sort-by", "confidence")
    assert page.evaluate(ORDER) == sorted(names, key=lambda n: means[n]["confidence"]), "least confident first"
    least = sorted(names, key=lambda n: means[n]["confidence"])[0]
    shown = page.locator("#thumbs li").first.locator(".score").inner_text()
    assert float(shown.split()[0]) == pytest.approx(means[least]["confidence"], abs=0.006), shown

    page.locator("#thumbs li").nth(2).locator("button").click()
    third = page.evaluate(ORDER)[2]
    page.wait_for_function("(name) => document.querySelector('#thumbs button[aria-current=\"true\"] .name').textContent === name", arg=third)
    page.wait_for_function("() => document.body.dataset.state === 'ready'")
    assert page.get_attribute("#thumbs li:nth-child(3) button", "aria-current") == "true"


DROPPED = """async () => {
  const { droppedFiles } = await import('/static/js/dropzone.js');
  const { imageFilter } = await import('/static/js/gallery.js');
  const config = JSON.parse(document.querySelector('#segu-config').textContent);
  const file = (path) => ({ isFile: true, isDirectory: false, fullPath: path, file: (ok) => ok(new File(['x'], path.split('/').pop())) });
  const folder = (path, children) => {
    let calls = 0;
    const batches = [children.slice(0, 2), children.slice(2), []];
    return { isFile: false, isDirectory: true, fullPath: path, createReader: () => ({ readEntries: (ok) => ok(batches[Math.min(calls++, 2)]) }) };
  };
  const sub = folder('/photos/sub', [file('/photos/sub/a.JPG')]);
  const tree = folder('/photos', [file('/photos/b.png'), file('/photos/notes.txt'), sub, file('/photos/c.webp')]);
  const files = await droppedFiles([file('/loose.txt'), tree, null], imageFilter(config.imageSuffixes));
  return files.map((f) => f.name);
}"""


def test_a_dropped_folder_gives_its_image_files_recursively_in_path_order(page: Any) -> None:
    assert page.evaluate(DROPPED) == ["loose.txt", "b.png", "c.webp", "a.JPG"]
