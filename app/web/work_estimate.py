"""What an analysis costs before it runs, in work units and in words, and what would make it fit the budget.

A request's units are its analysis's (analysed pixels × passes × (samples + 1)) plus its decode's: the decode's
estimated time (:mod:`app.io.decode_cost`) at ``DECODE_NS_PER_WORK_UNIT`` ns per unit or its estimated peak memory at
``BYTES_PER_WORK_UNIT`` bytes per unit, whichever is more. So the admission gate, which never admits more units at
once than the budget, bounds decoding's time and memory as it bounds the analyses', and a file whose decoding alone
is over the budget is refused before it is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.defaults import BYTES_PER_WORK_UNIT, DECODE_NS_PER_WORK_UNIT, DEFAULT_RESOLUTION, DEFAULT_TTA
from app.engine.augment import tta_plan
from app.engine.passes import pass_plan
from app.io.decode_cost import DecodeCost, decode_cost
from app.io.decoding import ImageHeader
from app.plural import plural
from app.request import AnalysisRequest
from app.workflows.adversarial import adversarial_units
from app.workflows.analyzer import Analyzer

__all__ = ["WorkEstimate", "decode_units", "describe_decode", "estimate_work"]


@dataclass(frozen=True)
class WorkEstimate:
    """The work of one request.

    Attributes:
        units: Analysed pixels × passes × (samples + 1), plus :attr:`decode_units` and an adversarial attack's units
            (:func:`~app.workflows.adversarial.adversarial_units`).
        pixels: Analysed pixels.
        describe: ``units``' factors in words.
        advice: What to send instead so the request fits the budget, in words.
        decode_units: The decode's share of ``units`` (0 when no header was given).
    """

    units: int
    pixels: int
    describe: str
    advice: str
    decode_units: int = 0


def decode_units(cost: DecodeCost) -> int:
    """A decode's work units: the larger of its time and its peak memory, converted."""
    return max(math.ceil(cost.seconds * 1e9 / DECODE_NS_PER_WORK_UNIT), math.ceil(cost.peak_bytes / BYTES_PER_WORK_UNIT))


def describe_decode(header: ImageHeader, cost: DecodeCost) -> str:
    """The decode's cost in words, e.g. ``decoding the 6000x4000 JPEG (L, 60 scans; 1.4 s and 95 MiB estimated)``."""
    scans = f", {header.scans} scans" if header.scans > 1 else ""
    reduced = f", reduced 1/{cost.scale}" if cost.scale > 1 else ""
    name = "WebP" if header.format == "WEBP" else header.format
    estimated = f"{cost.seconds:.1f} s and {cost.peak_bytes / 2**20:.0f} MiB estimated"
    return f"decoding the {header.width}x{header.height} {name} ({header.mode}{scans}{reduced}; {estimated})"


def estimate_work(
    analyzer: Analyzer, max_work: int, width: int, height: int, request: AnalysisRequest, header: ImageHeader | None = None, reading: int = 0
) -> WorkEstimate:
    """The work of analysing a ``width × height`` upload as ``request`` asks, against a budget of ``max_work`` units.

    Every pass (ensemble member × test-time augmentation, :mod:`app.engine.passes`) runs its deterministic pass and
    its ``samples`` MC samples. With the upload's ``header`` its decoding is counted too (reduced at working resolution
    where the format allows); ``reading`` adds the units of reading a tiled image that is never decoded whole.
    """
    samples, resolution, tta = request.samples, request.resolution, request.tta
    rows, cols = analyzer.analysed_shape(height, width, resolution)
    pixels = rows * cols
    passes = pass_plan(analyzer.bundle.net, tta, samples).passes
    per_pass = f" x {passes} passes" if passes > 1 else ""
    describe = f"{cols}x{rows} analysed pixels ({resolution} resolution of a {width}x{height} image){per_pass} x ({plural(samples, 'sample')} + 1)"
    decoding = 0
    if header is not None:
        cost = decode_cost(header, (rows, cols) if resolution == "working" else None)
        decoding = decode_units(cost)
        describe += f" = {pixels * passes * (samples + 1):,} units, + {decoding:,} units for {describe_decode(header, cost)}"
    if reading:
        decoding += reading
        describe += f" = {pixels * passes * (samples + 1):,} units, + {reading:,} units for reading the tiled image in bands"
    attack = adversarial_units(pixels, request)
    if attack:
        describe += f", + {attack:,} units for the adversarial attack ({len(request.adversarial)} radii x {request.adversarial_steps + 1} backward passes)"
    units = pixels * passes * (samples + 1) + decoding + attack
    if decoding > max_work:
        return WorkEstimate(units, pixels, describe, "its decoding alone is over the budget: send a smaller image", decoding)
    advice = []
    fitting = (max_work - decoding - attack) // (pixels * passes) - 1
    if 0 <= fitting < samples:
        advice.append(f"samples={fitting}" + (" or fewer" if fitting else ""))
    if tta != DEFAULT_TTA and pixels * (passes // len(tta_plan(tta, 0))) * (samples + 1) + decoding <= max_work:
        advice.append(f"tta={DEFAULT_TTA}")
    if resolution != DEFAULT_RESOLUTION and analyzer.analysed_shape(height, width, DEFAULT_RESOLUTION) != (rows, cols):
        advice.append(f"resolution={DEFAULT_RESOLUTION}")
    if attack:
        advice.append("fewer adversarial_epsilons or adversarial_steps")
    advice.append("a smaller image")
    words = "send " + ", ".join(advice[:-1]) + (" or " if len(advice) > 1 else "") + advice[-1]
    return WorkEstimate(units, pixels, describe, words, decoding)
