"""What an analysis costs before it runs, in work units and in words, and what would make it fit the budget."""

from __future__ import annotations

from dataclasses import dataclass

from app.defaults import DEFAULT_RESOLUTION, DEFAULT_TTA
from app.engine.augment import tta_plan
from app.engine.passes import pass_plan
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

__all__ = ["WorkEstimate", "estimate_work"]


@dataclass(frozen=True)
class WorkEstimate:
    """The work of one request.

    Attributes:
        units: Analysed pixels × passes × (samples + 1).
        pixels: Analysed pixels.
        describe: ``units``' factors in words.
        advice: What to send instead so the request fits the budget, in words.
    """

    units: int
    pixels: int
    describe: str
    advice: str


def estimate_work(analyzer: Analyzer, max_work: int, width: int, height: int, request: AnalysisRequest) -> WorkEstimate:
    """The work of analysing a ``width × height`` upload as ``request`` asks, against a budget of ``max_work`` units.

    Every pass (ensemble member × test-time augmentation, :mod:`app.engine.passes`) runs its deterministic pass and
    its ``samples`` MC samples.
    """
    samples, resolution, tta = request.samples, request.resolution, request.tta
    rows, cols = analyzer.analysed_shape(height, width, resolution)
    pixels = rows * cols
    passes = pass_plan(analyzer.bundle.net, tta, samples).passes
    per_pass = f" x {passes} passes" if passes > 1 else ""
    describe = f"{cols}x{rows} analysed pixels ({resolution} resolution of a {width}x{height} image){per_pass} x ({samples} samples + 1)"
    advice = []
    fitting = max_work // (pixels * passes) - 1
    if 0 <= fitting < samples:
        advice.append(f"samples={fitting}" + (" or fewer" if fitting else ""))
    if tta != DEFAULT_TTA and pixels * (passes // len(tta_plan(tta, 0))) * (samples + 1) <= max_work:
        advice.append(f"tta={DEFAULT_TTA}")
    if resolution != DEFAULT_RESOLUTION and analyzer.analysed_shape(height, width, DEFAULT_RESOLUTION) != (rows, cols):
        advice.append(f"resolution={DEFAULT_RESOLUTION}")
    advice.append("a smaller image")
    words = "send " + ", ".join(advice[:-1]) + (" or " if len(advice) > 1 else "") + advice[-1]
    return WorkEstimate(pixels * passes * (samples + 1), pixels, describe, words)
