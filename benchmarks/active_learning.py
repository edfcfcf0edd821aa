"""Does labelling the uncertain images first pay? A small active-learning loop on the synthetic scenes.

For each seed: a small model is trained from scratch on ``--initial`` clean scenes
(:func:`app.workflows.train.train`, the ``train`` command's own loop, at ``--size`` px): the default model's U-Net with a
MobileNetV2 encoder and MC dropout before the head, cut to three stages by default (``--decoder-channels 32 16 16``,
a step about half the default model's five stages' time on this CPU). Then, for ``--rounds`` rounds,
each strategy picks ``--per-round`` scenes from a pool of ``--pool`` unlabelled scenes — half clean (``train`` split,
the seed's own data seed, indices after the initial ones), half shifted (``shifted`` split, data seed 1000 + seed) —
adds them with their masks to its labelled set and fine-tunes the previous round's weights for ``--steps`` steps on
the labelled set so far (AdamW at a constant ``--lr``, batches of ``--batch``, the training's flips and 90° turns;
the same steps and batch seeds for every strategy). After each round the deterministic prediction is scored on a
fixed test set (``test`` split, data seed 0) and a fixed shifted set (``shifted`` split, data seed 0), the same for
every seed and strategy: mIoU of the summed confusion matrix (:func:`app.metrics.segmentation.segmentation_scores`).

Strategies, each round from the current model:

* ``random``: a uniform draw from the pool;
* ``mi``: the highest image means of mutual information from ``--samples`` MC-dropout samples, scored as
  ``rank --by mi`` scores an image (:meth:`~app.workflows.analyzer.Analyzer.analyze_image`,
  :func:`~app.workflows.rank_records.score_of`);
* ``mi_diverse``: as ``rank --by mi --diverse``: :func:`~app.metrics.selection.diverse_batch` (greedy k-center among
  the 3 × ``--per-round`` highest MI scores) on :func:`~app.engine.image_embedding.image_embedding`;
* ``feature_distance``: the highest image means of the ``feature_distance`` map, after refitting the feature density
  on the labelled set so far with the current model (:func:`~app.workflows.fit_density.fit_density`, not written to
  disk), as ``rank --by feature_distance`` would score them after ``fit-density`` on the labelled images.

Printed: per strategy and round, mean ± sd over seeds of the test and shifted mIoU and the share of shifted scenes in
the round's batch. Written: the numbers as JSON (``--json``) and the curves as a PNG (``--plot``, drawn with Pillow).

Usage: python benchmarks/active_learning.py [--seeds 3] [--rounds 4] [--per-round 10] [--pool 160] [--initial 20]
       [--initial-steps 1000] [--steps 150] [--decoder-channels 32 16 16] [--size 64] [--samples 20] [--threads 1]
       [--json docs/active_learning.json] [--plot docs/active_learning.png]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from app.defaults import IGNORE_INDEX
from app.engine.geometry import pad_to_stride, to_tensor
from app.engine.image_embedding import image_embedding
from app.io import synthetic
from app.io.bundle import Bundle, load_bundle
from app.metrics.segmentation import confusion_matrix, segmentation_scores
from app.metrics.selection import diverse_batch, rank_by_score
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.fit_density import fit_density
from app.workflows.rank_records import resolve_by, score_of
from app.workflows.train import scene_tensors, train, train_step
from app.workflows.train_config import TrainConfig

STRATEGIES = ("random", "mi", "mi_diverse", "feature_distance")
COLOURS = {"random": "#555555", "mi": "#e6194b", "mi_diverse": "#4363d8", "feature_distance": "#3cb44b"}
SHIFTED_POOL_SEED = 1000
EVAL_CHUNK = 50


@dataclass(frozen=True)
class Item:
    """One pool or labelled scene and where it came from."""

    split: str
    index: int
    data_seed: int
    scene: synthetic.Scene

    @property
    def name(self) -> str:
        return f"{self.split}_{self.data_seed}_{self.index:05d}"

    @property
    def shifted(self) -> bool:
        return self.split == "shifted"


@dataclass
class Round:
    """What one strategy reached after one round of one seed."""

    round: int
    labelled: int
    test_miou: float
    shifted_miou: float
    picked_shifted: int = 0
    picked: int = 0
    pick_seconds: float = 0.0
    train_seconds: float = 0.0


@dataclass
class SeedRun:
    seed: int
    initial_train_seconds: float
    rounds: dict[str, list[Round]] = field(default_factory=dict)


def _item(split: str, index: int, data_seed: int, size: int) -> Item:
    return Item(split, index, data_seed, synthetic.make_scene(split, index, size=size, seed=data_seed))


def _normalised(bundle: Bundle, items: list[Item]) -> torch.Tensor:
    norm = bundle.card.normalization
    return torch.cat([pad_to_stride(to_tensor(i.scene.image, norm.mean, norm.std), bundle.net.stride)[0] for i in items])


def miou(bundle: Bundle, x: torch.Tensor, y: torch.Tensor) -> float:
    """mIoU of the deterministic prediction (argmax of the logits, every dropout off) over the summed confusion matrix."""
    net = bundle.net.eval()
    classes = len(bundle.card.classes)
    confusion = torch.zeros(classes, classes, dtype=torch.int64)
    with torch.inference_mode():
        for start in range(0, len(x), EVAL_CHUNK):
            pred = net(x[start : start + EVAL_CHUNK]).argmax(dim=1)[..., : y.shape[-2], : y.shape[-1]]
            confusion += confusion_matrix(pred, y[start : start + EVAL_CHUNK], classes, IGNORE_INDEX)
    return segmentation_scores(confusion).miou


def fine_tune(bundle: Bundle, labelled: list[Item], steps: int, batch: int, lr: float, seed: tuple[int, ...]) -> None:
    """``steps`` AdamW steps at a constant ``lr`` on ``labelled``, with the training's flips and 90° turns; eval mode after."""
    torch.manual_seed(int(np.random.default_rng(seed).integers(2**31)))
    rng = np.random.default_rng(seed)
    net = bundle.net
    x_all, y_all = scene_tensors([i.scene for i in labelled], bundle.card.normalization)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    net.train()
    for _ in range(steps):
        loss = train_step(net, opt, x_all, y_all, min(batch, len(x_all)), rng)
        if not math.isfinite(loss.item()):
            raise RuntimeError("fine-tuning diverged")
    net.eval()


def image_scores(analyzer: Analyzer, pool: list[Item], by: str, samples: int, seed: int) -> np.ndarray:
    """Each pool scene's image-level score, as ``rank --by <by>`` computes it."""
    request = AnalysisRequest(samples=samples, seed=seed, class_arrays=False)
    return np.array([score_of(analyzer.analyze_image(i.scene.image, request), by)[0] for i in pool])


def pick(
    strategy: str, analyzer: Analyzer, pool: list[Item], labelled_files: list[Path], budget: int, args: argparse.Namespace, rng: np.random.Generator
) -> list[int]:
    """Indices into ``pool`` of the batch ``strategy`` labels next."""
    if strategy == "random":
        return [int(i) for i in rng.choice(len(pool), budget, replace=False)]
    if strategy in ("mi", "mi_diverse"):
        scores = image_scores(analyzer, pool, resolve_by("mi"), args.samples, 0)
        if strategy == "mi":
            return [int(i) for i in rank_by_score(scores)[:budget]]
        embeddings = image_embedding(analyzer.bundle.net, _normalised(analyzer.bundle, pool)).numpy()
        return diverse_batch(scores, embeddings, budget)
    if strategy == "feature_distance":
        fit_density(analyzer, labelled_files, write=False)
        scores = image_scores(analyzer, pool, "feature_distance", 0, 0)
        return [int(i) for i in rank_by_score(scores)[:budget]]
    raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


def run_seed(seed: int, args: argparse.Namespace, work: Path, evaluation: dict[str, list[Item]]) -> SeedRun:
    """The initial model of ``seed`` and every strategy's rounds from it."""
    folder = work / f"seed{seed}"
    config = TrainConfig(
        out=folder / "initial",
        name=f"active-learning-{seed}",
        seed=seed,
        steps=args.initial_steps,
        batch=args.batch,
        size=args.size,
        train_images=args.initial,
        test_images=4,
        decoder_channels=tuple(args.decoder_channels),
        threads=args.threads,
    )
    started = time.perf_counter()
    train(config, command=f"benchmarks/active_learning.py seed {seed}")
    run = SeedRun(seed, round(time.perf_counter() - started, 1))
    initial = [_item("train", i, seed, args.size) for i in range(args.initial)]
    half = args.pool // 2
    pool_all = [_item("train", args.initial + i, seed, args.size) for i in range(args.pool - half)]
    pool_all += [_item("shifted", i, SHIFTED_POOL_SEED + seed, args.size) for i in range(half)]
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for item in initial + pool_all:
        Image.fromarray(item.scene.image).save(images / f"{item.name}.png")
    first = load_bundle(config.out)
    tensors = {name: (_normalised(first, items), torch.from_numpy(np.stack([i.scene.mask for i in items])).long()) for name, items in evaluation.items()}
    start = Round(0, len(initial), miou(first, *tensors["test"]), miou(first, *tensors["shifted"]))
    print(
        f"seed {seed}: initial model ({args.initial} scenes, {args.initial_steps} steps, {run.initial_train_seconds:.0f}s) "
        f"test {start.test_miou:.3f} shifted {start.shifted_miou:.3f}",
        flush=True,
    )
    for strategy in args.strategies:
        bundle = load_bundle(config.out)
        analyzer = Analyzer(bundle)
        rng = np.random.default_rng([seed, STRATEGIES.index(strategy)])
        labelled, pool = list(initial), list(pool_all)
        rounds = [start]
        for r in range(1, args.rounds + 1):
            t0 = time.perf_counter()
            chosen = pick(strategy, analyzer, pool, [images / f"{i.name}.png" for i in labelled], args.per_round, args, rng)
            t1 = time.perf_counter()
            batch = [pool[i] for i in chosen]
            labelled += batch
            taken = set(chosen)
            pool = [item for i, item in enumerate(pool) if i not in taken]
            fine_tune(bundle, labelled, args.steps, args.batch, args.lr, (seed, r))
            t2 = time.perf_counter()
            result = Round(
                r,
                len(labelled),
                miou(bundle, *tensors["test"]),
                miou(bundle, *tensors["shifted"]),
                sum(i.shifted for i in batch),
                len(batch),
                round(t1 - t0, 2),
                round(t2 - t1, 2),
            )
            rounds.append(result)
            print(
                f"seed {seed} {strategy:<16} round {r}: {result.labelled} labelled, test {result.test_miou:.3f} shifted {result.shifted_miou:.3f}, "
                f"picked {result.picked_shifted}/{result.picked} shifted (pick {t1 - t0:.1f}s, train {t2 - t1:.1f}s)",
                flush=True,
            )
        run.rounds[strategy] = rounds
    return run


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summary(runs: list[SeedRun], strategies: list[str], rounds: int) -> dict[str, list[dict[str, float]]]:
    """Per strategy and round: mean and sd over seeds of both mIoUs, and the shifted share of the round's batch and of all picks so far."""
    out: dict[str, list[dict[str, float]]] = {}
    for strategy in strategies:
        rows = []
        for r in range(rounds + 1):
            cells = [run.rounds[strategy][r] for run in runs]
            test, test_sd = _mean_sd([c.test_miou for c in cells])
            shifted, shifted_sd = _mean_sd([c.shifted_miou for c in cells])
            picked = sum(c.picked for c in cells)
            so_far = [c for run in runs for c in run.rounds[strategy][1 : r + 1]]
            total = sum(c.picked for c in so_far)
            rows.append(
                {
                    "round": r,
                    "labelled": cells[0].labelled,
                    "test_miou": test,
                    "test_miou_sd": test_sd,
                    "shifted_miou": shifted,
                    "shifted_miou_sd": shifted_sd,
                    "batch_shifted_share": sum(c.picked_shifted for c in cells) / picked if picked else float("nan"),
                    "picked_shifted_share": sum(c.picked_shifted for c in so_far) / total if total else float("nan"),
                }
            )
        out[strategy] = rows
    return out


def table(rows: dict[str, list[dict[str, float]]]) -> str:
    """The summary as a Markdown table."""
    lines = [
        "| strategy | round | labelled | test mIoU | shifted mIoU | shifted share of the round's picks |",
        "|---|---|---|---|---|---|",
    ]
    for strategy, cells in rows.items():
        for c in cells:
            share = "–" if math.isnan(c["batch_shifted_share"]) else f"{c['batch_shifted_share']:.2f}"
            lines.append(
                f"| {strategy} | {c['round']} | {c['labelled']} | {c['test_miou']:.3f} ± {c['test_miou_sd']:.3f} | "
                f"{c['shifted_miou']:.3f} ± {c['shifted_miou_sd']:.3f} | {share} |"
            )
    return "\n".join(lines)


def plot(rows: dict[str, list[dict[str, float]]], path: Path, title: str) -> None:
    """Two panels (test and shifted mIoU against labelled scenes), mean ± sd over seeds, drawn with Pillow."""
    width, height, left, right, top, bottom, gap = 1000, 430, 60, 20, 60, 80, 70
    panel = (width - left - right - gap) // 2
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    draw.text((left, 12), title, fill="black", font=font)
    xs = [c["labelled"] for c in next(iter(rows.values()))]
    x_lo, x_hi = min(xs), max(xs)
    for p, (key, name) in enumerate((("test_miou", "test set (in distribution)"), ("shifted_miou", "shifted set"))):
        x0 = left + p * (panel + gap)
        lows = [c[key] - c[f"{key}_sd"] for cells in rows.values() for c in cells]
        highs = [c[key] + c[f"{key}_sd"] for cells in rows.values() for c in cells]
        y_lo, y_hi = math.floor(min(lows) * 20) / 20, math.ceil(max(highs) * 20) / 20
        y_top, y_bottom = top, height - bottom

        def px(x: float, y: float, x0: int = x0, y_lo: float = y_lo, y_hi: float = y_hi, y_top: int = y_top, y_bottom: int = y_bottom) -> tuple[float, float]:
            return x0 + (x - x_lo) / max(x_hi - x_lo, 1) * panel, y_bottom - (y - y_lo) / max(y_hi - y_lo, 1e-9) * (y_bottom - y_top)

        draw.rectangle([x0, y_top, x0 + panel, y_bottom], outline="black")
        draw.text((x0, y_top - 20), f"mIoU, {name}", fill="black", font=font)
        steps = round((y_hi - y_lo) / 0.05)
        for k in range(steps + 1):
            y = y_lo + k * 0.05
            _, yy = px(x_lo, y)
            draw.line([x0, yy, x0 + panel, yy], fill="#e5e5e5")
            draw.text((x0 - 40, yy - 7), f"{y:.2f}", fill="black", font=small)
        for x in xs:
            xx, _ = px(x, y_lo)
            draw.line([xx, y_bottom, xx, y_bottom + 4], fill="black")
            draw.text((xx - 8, y_bottom + 6), str(x), fill="black", font=small)
        draw.text((x0 + panel // 2 - 50, y_bottom + 24), "labelled scenes", fill="black", font=small)
        for s, (strategy, cells) in enumerate(rows.items()):
            colour = COLOURS.get(strategy, "black")
            shift = (s - (len(rows) - 1) / 2) * 2.5
            points = [px(c["labelled"], c[key]) for c in cells]
            points = [(x + shift, y) for x, y in points]
            draw.line(points, fill=colour, width=2)
            for (x, y), c in zip(points, cells, strict=True):
                _, y1 = px(c["labelled"], c[key] - c[f"{key}_sd"])
                _, y2 = px(c["labelled"], c[key] + c[f"{key}_sd"])
                draw.line([x, y1, x, y2], fill=colour, width=1)
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    for s, strategy in enumerate(rows):
        x = left + s * 200
        y = height - 28
        draw.line([x, y + 7, x + 24, y + 7], fill=COLOURS.get(strategy, "black"), width=3)
        draw.text((x + 30, y), strategy, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="run seeds (0 … seeds-1): initial model, pool and picks")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=10, help="scenes labelled per round")
    parser.add_argument("--pool", type=int, default=160, help="unlabelled pool, half clean, half shifted")
    parser.add_argument("--initial", type=int, default=20, help="clean scenes the initial model is trained on")
    parser.add_argument(
        "--decoder-channels",
        type=int,
        nargs="+",
        default=[32, 16, 16],
        help="U-Net decoder channels; their count is the encoder depth (default model: 128 64 32 16 16)",
    )
    parser.add_argument("--initial-steps", type=int, default=1000, help="training steps of the initial model (one-cycle, as `train`)")
    parser.add_argument("--steps", type=int, default=150, help="fine-tuning steps after each round")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (constant)")
    parser.add_argument("--size", type=int, default=64, help="scene side in pixels")
    parser.add_argument("--samples", type=int, default=20, help="MC-dropout samples for the MI scores")
    parser.add_argument("--test", type=int, default=100, help="scenes in each fixed evaluation set (test, shifted)")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("docs/active_learning.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/active_learning.png"))
    args = parser.parse_args(argv)
    if args.per_round * args.rounds > args.pool:
        parser.error("--per-round x --rounds must not exceed --pool")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    evaluation = {split: [_item(split, i, 0, args.size) for i in range(args.test)] for split in ("test", "shifted")}
    runs = []
    with tempfile.TemporaryDirectory(prefix="active_learning_") as work:
        for seed in range(args.seeds):
            runs.append(run_seed(seed, args, Path(work), evaluation))
    seconds = time.perf_counter() - started
    rows = summary(runs, args.strategies, args.rounds)
    print()
    print(table(rows))
    print(f"\n{len(runs)} seeds in {seconds:.0f}s on {torch.get_num_threads()} thread(s)")
    command = "python benchmarks/active_learning.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "command": command.strip(),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "seconds": round(seconds, 1),
            "torch": torch.__version__,
            "machine": f"{platform.machine()}, {torch.get_num_threads()} thread(s)",
            "summary": rows,
            "runs": [asdict(run) for run in runs],
        }
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    if args.plot:
        plot(rows, args.plot, f"Active learning on synthetic scenes ({args.size} px): mean ± sd over {len(runs)} seeds, {args.per_round} scenes a round")


if __name__ == "__main__":
    main()
