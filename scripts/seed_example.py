"""The seed's own example, measured: the person model on skimage.data.chelsea (a cat), every map and method, beside the
astronaut (a portrait: the model's own domain) for contrast; and the cost of the card's default test-time augmentation.

Prints the Markdown tables of docs/person.md. Analyses run at the working size (256 px long side), seed 0, on CPU.

    .venv/bin/python scripts/seed_example.py            # the tables
    .venv/bin/python scripts/seed_example.py --timing   # also: seconds per analysis of a 512x512 photo, tta none vs flips
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
import skimage.data
import torch

from app.engine.analysis import Analysis
from app.io.bundle import load_bundle
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

PERSON = 1
# (label, MC samples, TTA): the methods of the table; T = 20 is the app's default sample count
METHODS = (
    ("softmax (deterministic pass)", 0, "none"),
    ("inserted MC dropout, T = 20", 20, "none"),
    ("TTA flips (card default), T = 0", 0, "flips"),
    ("TTA flips + scales, T = 0", 0, "flips+scales"),
)
MAPS = ("confidence", "entropy", "variance", "mutual_information", "feature_distance")


@dataclass(frozen=True)
class Row:
    """One analysis's image means."""

    method: str
    person: float
    means: dict[str, float]


def row(analyzer: Analyzer, rgb: np.ndarray, label: str, samples: int, tta: str) -> Row:
    analysis: Analysis = analyzer.analyze_image(rgb, AnalysisRequest(samples=samples, seed=0, tta=tta))  # type: ignore[arg-type]
    means = {name: float(analysis.maps[name].mean(dtype=np.float64)) for name in MAPS}
    return Row(label, float((analysis.prediction == PERSON).mean()), means)


def fit_percentile(analyzer: Analyzer, value: float) -> float:
    """Share of the density's 16 fit images whose feature-distance image mean is below ``value``."""
    info = analyzer.bundle.card.feature_density
    assert info is not None
    fit_means = [mean for mean, _ in info.image_statistics]
    return sum(mean < value for mean in fit_means) / len(fit_means)


def table(analyzer: Analyzer, rgb: np.ndarray) -> list[Row]:
    return [row(analyzer, rgb, label, samples, tta) for label, samples, tta in METHODS]


def markdown(name: str, rows: list[Row], analyzer: Analyzer) -> str:
    lines = [
        f"**{name}**",
        "",
        "| method | % person | confidence | entropy | MC variance | mutual information | feature distance (percentile) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r.means
        lines.append(
            f"| {r.method} | {100 * r.person:.1f} % | {m['confidence']:.3f} | {m['entropy']:.3f} | {m['variance']:.4f} | "
            f"{m['mutual_information']:.3f} | {m['feature_distance']:.3f} |"
        )
    distance = rows[0].means["feature_distance"]
    lines += ["", f"Feature distance image mean {distance:.3f}: above {100 * fit_percentile(analyzer, distance):.0f} % of the density's fit images' means."]
    return "\n".join(lines)


def timing(analyzer: Analyzer, repeats: int) -> str:
    """Seconds of one analysis of skimage.data.astronaut (512x512 -> 256x256), T = 20 samples, tta none vs flips, interleaved
    (the two see the same machine load); the minimum is the least disturbed by other work on a shared machine."""
    rgb = np.asarray(skimage.data.astronaut())
    requests = {tta: AnalysisRequest(samples=20, seed=0, tta=tta) for tta in ("none", "flips")}  # type: ignore[arg-type]
    seconds: dict[str, list[float]] = {tta: [] for tta in requests}
    for request in requests.values():
        analyzer.analyze_image(rgb, request)  # warm-up
    for _ in range(repeats):
        for tta, request in requests.items():
            start = time.perf_counter()
            analyzer.analyze_image(rgb, request)
            seconds[tta].append(time.perf_counter() - start)
    lines = [f"| person model, astronaut 512×512 → 256², T = 20 | min s (of {repeats}) | median s |", "|---|---|---|"]
    for tta, values in seconds.items():
        lines.append(f"| tta {tta} | {min(values):.3f} | {statistics.median(values):.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timing", action="store_true", help="also time tta none vs flips on a 512x512 photo")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    analyzer = Analyzer(load_bundle("person"), torch.device("cpu"))
    print(markdown("skimage.data.chelsea (the cat, 300×451 → 256×170)", table(analyzer, np.asarray(skimage.data.chelsea())), analyzer))
    print()
    print(markdown("skimage.data.astronaut (a portrait, 512×512 → 256×256), for contrast", table(analyzer, np.asarray(skimage.data.astronaut())), analyzer))
    if args.timing:
        print()
        print(timing(analyzer, args.repeats))


if __name__ == "__main__":
    main()
