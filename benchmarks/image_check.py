"""False-alarm and catch rates of the image-level verdict (:mod:`app.metrics.conformal`) on the default model.

* False alarms: fresh in-distribution scenes (``app.io.synthetic`` test split; no test scene took part in the training,
  the feature density, the score's fit or its calibration), share with ``p <= alpha``.
* Catches: test scenes under 14 corruptions of our own (noise, blur, contrast, brightness, JPEG, colour, pixelation);
  among the corrupted images whose pixel error exceeds 10 %, the share with ``p <= alpha``.

For comparison the same analyses give the previous verdicts: any of the four maps at its 99th percentile, and that OR
the feature typicality at its 99th percentile. Prints a Markdown table (with a binomial standard error per rate).

Usage: python benchmarks/image_check.py [--scenes 300] [--corrupted 50] [--samples 20] [--model default]
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from app.defaults import IGNORE_INDEX
from app.engine.analysis import Analysis
from app.io.bundle import load_bundle
from app.io.synthetic import make_scene
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

Corruption = Callable[[Image.Image, np.random.Generator], Image.Image]


def _noise(sigma: float) -> Corruption:
    def f(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        x = np.asarray(img, dtype=np.float32) + rng.normal(0, sigma, (img.height, img.width, 3))
        return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))

    return f


def _jpeg(quality: int) -> Corruption:
    def f(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    return f


def _pixelate(factor: int) -> Corruption:
    def f(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        small = img.resize((img.width // factor, img.height // factor), Image.Resampling.BILINEAR)
        return small.resize(img.size, Image.Resampling.NEAREST)

    return f


CORRUPTIONS: dict[str, Corruption] = {
    "noise 20": _noise(20),
    "noise 45": _noise(45),
    "blur 1.5": lambda img, rng: img.filter(ImageFilter.GaussianBlur(1.5)),
    "blur 3": lambda img, rng: img.filter(ImageFilter.GaussianBlur(3)),
    "contrast 0.4": lambda img, rng: ImageEnhance.Contrast(img).enhance(0.4),
    "contrast 0.2": lambda img, rng: ImageEnhance.Contrast(img).enhance(0.2),
    "brighter": lambda img, rng: ImageEnhance.Brightness(img).enhance(1.6),
    "darker": lambda img, rng: ImageEnhance.Brightness(img).enhance(0.4),
    "jpeg 10": _jpeg(10),
    "jpeg 4": _jpeg(4),
    "grey": lambda img, rng: img.convert("L").convert("RGB"),
    "channels swapped": lambda img, rng: Image.merge("RGB", img.split()[::-1]),
    "inverted": lambda img, rng: Image.fromarray(255 - np.asarray(img)),
    "pixelated 4": _pixelate(4),
}


def old_verdicts(analysis: Analysis) -> tuple[bool, bool]:
    """The previous verdicts: any map at its 99th percentile; that or the typicality at its 99th."""
    maps = any(v.unusual for v in analysis.image_ood if v.map != "feature_distance")
    return maps, maps or any(v.unusual for v in analysis.image_ood if v.map == "feature_distance")


def rate(hits: int, n: int) -> str:
    if n == 0:
        return "–"
    r = hits / n
    return f"{100 * r:.1f} % ({hits}/{n}, ± {100 * math.sqrt(max(r * (1 - r), 1e-12) / n):.1f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--scenes", type=int, default=300, help="fresh test scenes for the false-alarm rate")
    p.add_argument("--corrupted", type=int, default=50, help="test scenes corrupted 14 ways for the catch rate")
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    analyzer = Analyzer(load_bundle(args.model))
    test = analyzer.bundle.card.image_test
    if test is None:
        print(f"{args.model} has no image_test: run seg-uncertainty calibrate first", file=sys.stderr)
        return 2
    request = AnalysisRequest(samples=args.samples, seed=0)
    started = time.perf_counter()
    fresh = {"combined": 0, "maps": 0, "maps_or_typicality": 0}
    p_values = []
    for i in range(args.scenes):
        a = analyzer.analyze_image(make_scene("test", i).image, request)
        assert a.image_check is not None and a.image_check.p_value is not None
        p_values.append(a.image_check.p_value)
        fresh["combined"] += a.image_check.status == "unusual"
        m, mt = old_verdicts(a)
        fresh["maps"] += m
        fresh["maps_or_typicality"] += mt
    failing = {"combined": 0, "maps": 0, "maps_or_typicality": 0}
    per: dict[str, list[int]] = {name: [0, 0, 0] for name in CORRUPTIONS}  # failing, caught, corrupted
    rng = np.random.default_rng(0)
    for i in range(args.corrupted):
        scene = make_scene("test", i)
        scored = scene.mask != IGNORE_INDEX
        for name, corrupt in CORRUPTIONS.items():
            rgb = np.asarray(corrupt(Image.fromarray(scene.image), rng).convert("RGB"))
            a = analyzer.analyze_image(rgb, request)
            error = float((a.prediction[scored] != scene.mask[scored]).mean())
            assert a.image_check is not None
            caught = a.image_check.status == "unusual"
            per[name][2] += 1
            if error > 0.10:
                per[name][0] += 1
                per[name][1] += caught
                failing["combined"] += caught
                m, mt = old_verdicts(a)
                failing["maps"] += m
                failing["maps_or_typicality"] += mt
    n_fail = sum(v[0] for v in per.values())
    print(
        f"model {args.model}: alpha = {test.alpha:g}, {len(test.scores)} calibration images ({test.calibrated_on}); {args.samples} MC samples; "
        f"{time.perf_counter() - started:.0f} s\n"
    )
    print("| verdict | false alarms on fresh test scenes | caught among corrupted scenes with > 10 % pixel error |")
    print("|---|---|---|")
    labels = {
        "combined": f"conformal test, p ≤ {test.alpha:g} (the verdict)",
        "maps": "any of 4 maps ≥ 99th percentile (before)",
        "maps_or_typicality": "that, or typicality ≥ 99th percentile",
    }
    for key, label in labels.items():
        print(f"| {label} | {rate(fresh[key], args.scenes)} | {rate(failing[key], n_fail)} |")
    print(f"\nMedian p-value on fresh scenes: {float(np.median(p_values)):.2f}; share of p-values <= 0.05: {np.mean(np.asarray(p_values) <= 0.05):.3f}\n")
    print("| corruption | failing (> 10 % error) / corrupted | caught of failing |")
    print("|---|---|---|")
    for name, (fail, caught, total) in per.items():
        print(f"| {name} | {fail}/{total} | {caught}/{fail} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
