"""A streamed analysis's memory does not grow with the image's height: a 1024×4096 tiled TIFF peaks where a 1024×1024
one does, where holding its maps (32 bytes a pixel) would cost 96 MiB more. Nor with its width: cut into column strips
of 512, a 4096×256 slide peaks where a 1024×256 one does, where a band as wide as the image would hold three quarters of
its width more of blending accumulators and finished maps (``(3C + 3) · 4 + 40`` bytes a pixel, a band of tile rows).

A subprocess (this file run as a script) loads the default model with a 48 MiB budget, warms it up, then for each
image measures the growth of its resident memory (``VmHWM`` after resetting it, over ``VmRSS`` before) while
``analyse_files`` streams it to ``maps.zarr`` (``T = 0``: the sampling's working memory is the engine's budget either way).
"""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 48 * 2**20
WIDTH = 1024
HEIGHTS = (1024, 4096)
WIDTHS = (1024, 4096)
WIDE_HEIGHT = 256
STRIP = 512
MAP_BYTES = 6 * 4 + 8  # per pixel: the six float32 maps and the int64 labels an in-memory analysis holds


def _status_kib(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def _slide(path: Path, height: int, width: int = WIDTH) -> Path:
    """A seeded tiled TIFF of synthetic scenes, ``height × width``, written tile by tile."""
    import tifffile

    from app.io.synthetic import make_scene

    scenes = [make_scene("test", k, size=256).image for k in range(8)]

    def tiles() -> Any:
        for top in range(0, height, 256):
            for left in range(0, width, 256):
                yield scenes[(top // 256 + left // 256) % len(scenes)]

    tifffile.imwrite(path, tiles(), shape=(height, width, 3), dtype=np.uint8, tile=(256, 256), photometric="rgb", compression="zlib")
    return path


def _measure(folder: Path) -> dict[str, Any]:
    import torch

    from app.cli.common import load_analyzer
    from app.engine.free_memory import release_free_memory
    from app.request import AnalysisRequest
    from app.workflows.analyse_folder import analyse_files

    torch.manual_seed(0)
    analyzer = load_analyzer("default", "cpu", memory_budget=BUDGET, max_pixels=WIDTH * 512)
    request = AnalysisRequest(samples=0, resolution="full")
    slides = [_slide(folder / f"slide{h}.tif", h) for h in HEIGHTS]
    list(analyse_files(analyzer, [slides[0]], folder / "warm", request, store_format="zarr"))
    growth, statuses = {}, {}
    for height, slide in zip(HEIGHTS, slides, strict=True):
        gc.collect()
        release_free_memory()
        Path("/proc/self/clear_refs").write_text("5")
        base = _status_kib("VmRSS")
        [row] = analyse_files(analyzer, [slide], folder / f"out{height}", request, store_format="zarr")
        growth[height] = (_status_kib("VmHWM") - base) * 1024
        statuses[height] = row.status
    return {"growth": growth, "statuses": statuses}


def _measure_widths(folder: Path, strip_columns: int | None) -> dict[str, Any]:
    import torch

    from app.cli.common import load_analyzer
    from app.engine.free_memory import release_free_memory
    from app.io.pixel_source import open_tiled_tiff
    from app.request import AnalysisRequest
    from app.workflows.stream_analysis import analyze_to_store, stream_grid

    torch.manual_seed(0)
    analyzer = load_analyzer("default", "cpu", memory_budget=BUDGET, max_pixels=WIDE_HEIGHT * 512)
    request = AnalysisRequest(samples=0, resolution="full")
    slides = [_slide(folder / f"wide{w}.tif", WIDE_HEIGHT, w) for w in WIDTHS]
    with open_tiled_tiff(slides[0], 10**9) as source:
        analyze_to_store(analyzer, source, request, folder / "warm.zarr", strip_columns=strip_columns)
    growth = {}
    for width, slide in zip(WIDTHS, slides, strict=True):
        gc.collect()
        release_free_memory()
        Path("/proc/self/clear_refs").write_text("5")
        base = _status_kib("VmRSS")
        with open_tiled_tiff(slide, 10**9) as source:
            analyze_to_store(analyzer, source, request, folder / f"wide{width}.zarr", strip_columns=strip_columns)
        growth[width] = (_status_kib("VmHWM") - base) * 1024
    grid, _ = stream_grid(analyzer, WIDE_HEIGHT, WIDTHS[1], request)
    return {"growth": growth, "band_rows": grid.tile[0]}


def test_streamed_memory_does_not_grow_with_the_width(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, __file__, str(tmp_path), str(STRIP)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    narrow, wide = (figures["growth"][str(w)] for w in WIDTHS)
    band = (WIDTHS[1] - WIDTHS[0]) * figures["band_rows"] * ((3 * 5 + 3) * 4 + 40)
    assert wide - narrow < band / 3, figures


def test_streamed_memory_does_not_grow_with_the_height(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, __file__, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(figures["statuses"].values()) == {"ok"}
    small, large = (figures["growth"][str(h)] for h in HEIGHTS)
    held = (HEIGHTS[1] - HEIGHTS[0]) * WIDTH * MAP_BYTES
    assert large - small < held / 4, figures
    assert large < BUDGET + 64 * 2**20, figures
    for height in HEIGHTS:
        assert (tmp_path / f"out{height}" / f"slide{height}" / "maps.zarr").is_dir()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if len(sys.argv) > 2:
        print(json.dumps(_measure_widths(Path(sys.argv[1]), None if sys.argv[2] == "none" else int(sys.argv[2]))))
    else:
        print(json.dumps(_measure(Path(sys.argv[1]))))
