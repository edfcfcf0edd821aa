"""Progress of one analysis (app/engine/cancel.py Progress): nested loops divide their parent's step, the fraction rises
from 0 to 1 over tiles, passes and sample chunks, and reporting it changes no map."""

from __future__ import annotations

import numpy as np
import pytest

from app.defaults import TtaMode
from app.engine.cancel import CancelToken, Progress, progress_steps
from app.io.bundle import Bundle
from app.io.synthetic import make_scene
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

MAPS = ("confidence", "entropy", "expected_entropy", "mutual_information", "variance")


def test_nested_loops_divide_their_parents_step() -> None:
    seen: list[tuple[float, float, int, str]] = []
    progress = Progress(lambda p: seen.append((p.fraction, p.done, p.total, p.unit)))
    token = CancelToken(progress=progress)
    tile = progress_steps(token, 2, "tile")
    for _ in range(2):
        chunk = progress_steps(token, 4, "chunk")
        for _ in range(4):
            chunk()
        tile()
    assert [f for f, *_ in seen] == [0.125, 0.25, 0.375, 0.5, 0.5, 0.625, 0.75, 0.875, 1.0, 1.0]
    assert seen[-1][1:] == (2.0, 2, "tile")
    assert progress_steps(None, 3, "tile") is progress_steps(CancelToken(), 3, "tile")  # no token, no progress: a no-op
    progress_steps(token, 0, "chunk")()  # an empty loop reports nothing
    assert len(seen) == 10


def test_a_finished_loop_ignores_extra_steps_and_an_abandoned_inner_loop_ends_with_its_step() -> None:
    progress = Progress()
    token = CancelToken(progress=progress)
    outer = progress_steps(token, 2, "pass")
    progress_steps(token, 10, "chunk")()  # cancelled after one chunk of ten
    outer()
    assert progress.fraction == 0.5
    progress_steps(token, 2, "chunk")()
    assert progress.fraction == 0.75
    outer()
    outer()
    assert progress.fraction == 1.0


def _analyse(bundle: Bundle, rgb: np.ndarray, request: AnalysisRequest, progress: Progress | None, budget: int) -> dict[str, np.ndarray]:
    analysis = Analyzer(bundle, memory_budget=budget).analyze_image(rgb, request, cancel=CancelToken(progress=progress))
    return {name: analysis.maps[name] for name in MAPS} | {"prediction": analysis.prediction}


@pytest.mark.parametrize(
    ("tta", "budget", "unit", "reports"), [("none", 2**20, "tile", 4), ("flips", 2**20, "tile", 16), ("flips", 2**28, "pass", 8), ("none", 2**28, "pass", 2)]
)
def test_an_analysis_reports_rising_progress_to_one_and_the_same_maps(tiny_bundle: Bundle, tta: TtaMode, budget: int, unit: str, reports: int) -> None:
    """Sliding windows (a 1 MiB budget tiles the 200x232 scene) report per tile; a whole image per pass (each pass's row tiles
    within), the one pass of a plain analysis (its one row tile of the tiled head, then the pass)."""
    rgb = make_scene("test", 1, size=232).image[:200]
    request = AnalysisRequest(samples=6, seed=2, resolution="full", tta=tta)
    tiles = Analyzer(tiny_bundle, memory_budget=budget).tile_grid(200, 232)
    assert (tiles is not None) == (unit == "tile")
    fractions: list[float] = []
    progress = Progress(lambda p: fractions.append(p.fraction))
    with_progress = _analyse(tiny_bundle, rgb, request, progress, budget)
    assert len(fractions) >= reports and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert reports == 2 or 0 < fractions[0] < 1
    assert progress.unit == unit
    if tiles is not None:
        assert progress.total == len(tiles.tops) * len(tiles.lefts) > 1
    without = _analyse(tiny_bundle, rgb, request, None, budget)
    for name, value in without.items():
        np.testing.assert_array_equal(with_progress[name], value, err_msg=name)
