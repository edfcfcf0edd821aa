"""Do the uncertainty maps see where a tiny perturbation changes the prediction? (issue 23, "how little it takes to fool it")

For each image (synthetic test scenes from :func:`app.io.synthetic.make_scene`, and ``skimage.data`` photos at the model's
working size) this runs one analysis with the adversarial attack (:mod:`app.engine.adversarial`: FGSM + PGD steps at
``--epsilons``) and one with test-time flips, then reports:

1. per split, the mean share of pixels flipped at each ε (the kept perturbed image, unrounded);
2. the pixel-level AUROC of each uncertainty map (1 − confidence, entropy, expected entropy, mutual information, MC
   variance, feature distance, TTA-flips entropy; and, to tell the softmax's information from its max, the deterministic
   softmax's margin ``1 − (p₁ − p₂)`` and entropy) for predicting "flips at ε ≤ ``--target``" (flip-ε map ≤ target),
   pooled over the split's pixels, ± the standard deviation over a bootstrap of the images;
3. attacked vs clean: the 8-bit perturbed image at ε = ``--target`` analysed like the clean one, and the mean of each
   map over the pixels the attack flipped and over the others, clean vs attacked (does MI rise where it succeeded?), with
   the number of images whose mean MI over their flipped pixels rose.

``--attack-mc T`` attacks the MC mean over T fixed dropout masks instead (expectation over transformation; masks seeded
apart from the analyses'), and then counts as flipped the pixels whose analysed (MC-mean) prediction changed: the
stronger test of whether the MC maps notice an attack aimed at them.

Usage: python scripts/adversarial_auroc.py [--scenes 40] [--size 128] [--photos astronaut chelsea coffee] [--samples 20]
       [--epsilons 1,2,4,8] [--target 2] [--steps 3] [--threads 1] [--model default] [--attack-mc 0]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import torch

from app.engine.adversarial import AttackSettings, LogProbs, attack
from app.engine.analysis import Analysis
from app.engine.attack_target import mc_log_probs, pixel_log_probs
from app.io.bundle import load_bundle, resolve_bundle_dir
from app.io.synthetic import make_scene
from app.metrics.detection import DetectionStats
from app.request import AnalysisRequest, parse_epsilons
from app.workflows.analyzer import Analyzer

MAPS = ("confidence", "entropy", "expected_entropy", "mutual_information", "variance", "feature_distance")
SCORES = (
    "1 - confidence",
    "1 - margin",
    "softmax_entropy",
    "-log_margin",
    "entropy",
    "expected_entropy",
    "mutual_information",
    "variance",
    "feature_distance",
    "tta_entropy",
)
BOOTSTRAP = 50
ATTACK_MASK_SEED = 1000  # --attack-mc's masks: not those of the analyses (seed 0), so the attack must transfer to them


def images(args: argparse.Namespace) -> Iterator[tuple[str, str, np.ndarray]]:
    """``(split, name, rgb)`` of every image."""
    for index in range(args.scenes):
        yield "test scenes", f"test_{index}", make_scene("test", index, size=args.size).image
    import skimage.data

    for name in args.photos:
        rgb = getattr(skimage.data, name)()
        yield "photos", name, np.ascontiguousarray(rgb[..., :3])


def scores(analysis: Analysis, tta: Analysis, log_probs: LogProbs) -> dict[str, np.ndarray]:
    """Each uncertainty score, higher = more uncertain. ``-log_margin`` is ``log p₂ − log p₁`` of the deterministic pass,
    computed in log space (the softmax's own ranking of the pixels, without float32 probabilities saturating at 1)."""
    out = {name: analysis.maps[name] for name in MAPS if name != "confidence"}
    out["1 - confidence"] = 1.0 - analysis.maps["confidence"]
    probs = np.sort(analysis.probs, axis=0)  # the deterministic softmax, ascending over classes
    out["1 - margin"] = 1.0 - (probs[-1] - probs[-2])
    out["softmax_entropy"] = -(analysis.probs * np.log(np.clip(analysis.probs, 1e-30, None))).sum(axis=0)
    out["tta_entropy"] = tta.maps["entropy"]
    with torch.no_grad():
        image = torch.from_numpy(np.array(analysis.image, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
        top = torch.topk(log_probs(image.double())[0], 2, dim=0).values
    out["-log_margin"] = (top[1] - top[0]).numpy()
    return out


def bootstrap_sd(images: list[tuple[np.ndarray, dict[str, np.ndarray]]], name: str) -> float:
    """Standard deviation of the pooled AUROC of ``name`` over :data:`BOOTSTRAP` resamples of the images (seeded)."""
    rng = np.random.default_rng(0)
    values = []
    for _ in range(BOOTSTRAP):
        stats = DetectionStats()
        for index in rng.integers(0, len(images), len(images)):
            positive, scored = images[index]
            stats.update(scored[name], positive)
        auroc = stats.auroc()
        if auroc is not None:
            values.append(auroc)
    return float(np.std(values)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=40, help="synthetic test scenes")
    parser.add_argument("--size", type=int, default=128, help="side of the synthetic scenes")
    parser.add_argument("--photos", nargs="*", default=["astronaut", "chelsea", "coffee"], help="skimage.data photos")
    parser.add_argument("--samples", type=int, default=20, help="MC samples")
    parser.add_argument("--epsilons", default="1,2,4,8", help="attack radii in pixel levels")
    parser.add_argument("--target", type=float, default=2.0, help="positives: pixels with flip-eps <= this")
    parser.add_argument("--steps", type=int, default=3, help="PGD steps after the FGSM step")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads")
    parser.add_argument("--model", default="default", help="bundle name or folder")
    parser.add_argument(
        "--attack-mc",
        type=int,
        default=0,
        metavar="T",
        help="attack the MC mean over T fixed dropout masks (seeded apart from the analyses' masks) instead of the deterministic pass",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_bundle(resolve_bundle_dir(args.model))
    analyzer = Analyzer(bundle)
    norm = bundle.card.normalization
    copy = load_bundle(resolve_bundle_dir(args.model))  # a float64 copy for the log-space margin; the analyser keeps float32
    log_probs = pixel_log_probs(copy.net.double().eval(), norm.mean, norm.std)
    epsilons = parse_epsilons(args.epsilons)
    if args.target not in epsilons:
        parser.error(f"--target {args.target:g} must be one of --epsilons")
    target = epsilons.index(args.target)
    request = AnalysisRequest(samples=args.samples, seed=0, adversarial=epsilons, adversarial_steps=args.steps)
    plain = AnalysisRequest(samples=args.samples, seed=0)
    flips = AnalysisRequest(samples=0, seed=0, tta="flips")
    detect: dict[str, dict[str, DetectionStats]] = defaultdict(lambda: {name: DetectionStats() for name in SCORES})
    shares: dict[str, list[list[float]]] = defaultdict(list)
    sums: dict[str, dict[str, np.ndarray]] = defaultdict(lambda: defaultdict(lambda: np.zeros(4)))  # clean/attacked x flipped/other
    counts: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(2))
    positives: dict[str, int] = defaultdict(int)
    pixels: dict[str, int] = defaultdict(int)
    unavailable = set(analyzer.unavailable)
    kept: dict[str, list[tuple[np.ndarray, dict[str, np.ndarray]]]] = defaultdict(list)
    rises: dict[str, list[bool]] = defaultdict(list)
    mc_target = mc_log_probs(bundle.net, norm.mean, norm.std, args.attack_mc, ATTACK_MASK_SEED) if args.attack_mc else None
    settings = AttackSettings(epsilons, steps=args.steps, seed=0)
    for split, _name, rgb in images(args):
        if mc_target is None:
            analysis = analyzer.analyze_image(rgb, request)
            adv = analysis.adversarial
            assert adv is not None
            flip_epsilon, flip_share, perturbed = adv.flip_epsilon, adv.flip_share, adv.perturbed[target]
        else:
            analysis = analyzer.analyze_image(rgb, plain)
            image = torch.from_numpy(np.array(analysis.image, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
            result = attack(mc_target, image, settings)
            flip_epsilon, flip_share = result.flip_epsilon[0].numpy(), [float(v) for v in result.flip_share[:, 0]]
            perturbed = result.perturbed[target, 0].round().clamp(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
        tta = analyzer.analyze_image(rgb, flips)
        positive = flip_epsilon <= args.target
        positives[split] += int(positive.sum())
        pixels[split] += positive.size
        values = {name: v.reshape(-1) for name, v in scores(analysis, tta, log_probs).items() if name not in unavailable}
        for name, v in values.items():
            detect[split][name].update(v, positive.reshape(-1))
        kept[split].append((positive.reshape(-1), values))
        shares[split].append(flip_share)
        attacked = analyzer.analyze_image(perturbed, plain)
        # flipped: the attacked class (the deterministic one, or with --attack-mc the analysis's MC-mean prediction) changed
        flipped = adv.predictions[target] != adv.clean if mc_target is None else attacked.prediction != analysis.prediction
        counts[split] += (flipped.sum(), (~flipped).sum())
        if flipped.any():
            mi = "mutual_information"
            rises[split].append(bool(attacked.maps[mi][flipped].mean() > analysis.maps[mi][flipped].mean()))
        for name in MAPS:
            if name in unavailable:
                continue
            clean_map, attacked_map = analysis.maps[name], attacked.maps[name]
            sums[split][name] += (clean_map[flipped].sum(), attacked_map[flipped].sum(), clean_map[~flipped].sum(), attacked_map[~flipped].sum())
    print(
        f"model {bundle.card.name}; {args.samples} MC samples; attack eps {args.epsilons} (/255), FGSM + {args.steps} PGD steps "
        f"on {f'the MC mean of {args.attack_mc} dropout draws' if args.attack_mc else 'the deterministic pass'}; "
        f"positives: flip-eps <= {args.target:g}/255\n"
    )
    header = " | ".join(f"{e:g}/255" for e in epsilons)
    print(f"| split | images | {header} |\n|---|---|{'---|' * len(epsilons)}")
    for split, rows in shares.items():
        mean = np.mean(np.array(rows), axis=0)
        print(f"| {split} | {len(rows)} | " + " | ".join(f"{100 * v:.1f} %" for v in mean) + " |")
    print(f"\nPixel AUROC for 'flips at eps <= {args.target:g}/255' (positives / pixels):\n")
    print("| map | " + " | ".join(f"{s} ({positives[s] / pixels[s]:.1%})" for s in detect) + " |")
    print("|---|" + "---|" * len(detect))
    for name in SCORES:
        cells = []
        for split in detect:
            auroc = detect[split][name].auroc() if name not in unavailable else None
            cells.append("n/a" if auroc is None else f"{auroc:.3f} ± {bootstrap_sd(kept[split], name):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nMean of each map, clean vs attacked (8-bit image at eps = {args.target:g}/255), over flipped and other pixels:\n")
    print("| split | map | flipped: clean | flipped: attacked | others: clean | others: attacked |\n|---|---|---|---|---|---|")
    for split, per_map in sums.items():
        flipped_n, other_n = counts[split]
        for name, total in per_map.items():
            a, b, c, d = total[0] / max(flipped_n, 1), total[1] / max(flipped_n, 1), total[2] / max(other_n, 1), total[3] / max(other_n, 1)
            print(f"| {split} | {name} | {a:.4f} | {b:.4f} | {c:.4f} | {d:.4f} |")
    for split, rose in rises.items():
        print(f"\n{split}: mean MI over the flipped pixels rose in {sum(rose)} of {len(rose)} images with flipped pixels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
