"""What the adversarial-sensitivity attack costs, next to one deterministic pass, at the working size.

On the default model and a synthetic test scene at its working size (256 x 256), in interleaved rounds (each round sees
the same machine conditions) of:

- one deterministic pass of the network from pixels (:func:`app.engine.attack_target.pixel_log_probs`, no gradient);
- the attack (:func:`app.engine.adversarial.attack`) at ``--epsilons`` with ``--steps`` PGD steps after the FGSM step;
- for scale, a whole analysis with ``--samples`` MC samples (what a request without the attack costs).

Printed: median seconds of each, and the median of the per-round ratios "attack / deterministic pass" and
"attack / analysis". The attack runs ``len(eps) x (steps + 1)`` forward-and-backward passes and ``len(eps) + 1`` forward
passes; a backward pass costs about two forwards, so the expected ratio is about ``len(eps) x (3 (steps + 1) + 1) + 1``.

Usage: python benchmarks/adversarial_cost.py [--rounds 5] [--threads 1] [--epsilons 1,2,4,8] [--steps 3] [--samples 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from app.engine.adversarial import AttackSettings, attack
from app.engine.attack_target import pixel_log_probs
from app.io.bundle import load_bundle
from app.io.synthetic import make_scene
from app.request import AnalysisRequest, parse_epsilons
from app.workflows.analyzer import Analyzer

MODEL = Path(__file__).resolve().parents[1] / "models" / "default"


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads")
    parser.add_argument("--epsilons", default="1,2,4,8", help="radii in pixel levels, comma-separated")
    parser.add_argument("--steps", type=int, default=3, help="PGD steps after the FGSM step")
    parser.add_argument("--samples", type=int, default=20, help="MC samples of the analysis shown for scale")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_bundle(MODEL)
    analyzer = Analyzer(bundle)
    size = bundle.card.input.working_size or 256
    rgb = make_scene("test", 0, size=size).image
    norm = bundle.card.normalization
    log_probs = pixel_log_probs(bundle.net.eval(), norm.mean, norm.std)
    image = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float()
    settings = AttackSettings(parse_epsilons(args.epsilons), steps=args.steps, seed=0)

    def deterministic() -> None:
        with torch.no_grad():
            log_probs(image).argmax(1)

    def attacked() -> None:
        attack(log_probs, image, settings)

    def analysed() -> None:
        analyzer.analyze_image(rgb, AnalysisRequest(samples=args.samples))

    for run in (deterministic, attacked, analysed):  # warm-up
        run()
    times: dict[str, list[float]] = {"deterministic": [], "attack": [], "analysis": []}
    for _ in range(args.rounds):
        times["deterministic"].append(_seconds(deterministic))
        times["attack"].append(_seconds(attacked))
        times["analysis"].append(_seconds(analysed))
    median = {name: statistics.median(values) for name, values in times.items()}
    per_pass = statistics.median(a / d for a, d in zip(times["attack"], times["deterministic"], strict=True))
    per_analysis = statistics.median(a / s for a, s in zip(times["attack"], times["analysis"], strict=True))
    radii = len(settings.epsilons)
    print(f"default model, {size}x{size} test scene, {args.threads} thread(s), {args.rounds} rounds")
    print(f"attack: eps {', '.join(f'{e:g}/255' for e in settings.epsilons)}, FGSM + {args.steps} PGD steps each")
    print(f"  expected ratio ~ {radii * (3 * (args.steps + 1) + 1) + 1} (forward = 1, forward + backward = 3)")
    print(f"deterministic pass  {median['deterministic'] * 1000:9.1f} ms")
    print(f"attack              {median['attack'] * 1000:9.1f} ms   {per_pass:.1f}x the deterministic pass")
    print(f"analysis T={args.samples:<3d}      {median['analysis'] * 1000:9.1f} ms   attack = {per_analysis:.2f}x the analysis")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
