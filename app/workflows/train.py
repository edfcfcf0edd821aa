"""Train the default model from scratch on the synthetic scenes and write a bundle.

Usage: ``seg-uncertainty train --out models/default`` (see ``--help``) or :func:`train` with a
:class:`TrainConfig`. Runs on
the CPU in well under 45 minutes with the defaults and is reproducible from
``--seed`` (same seed, same device, same result).
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from app.defaults import IGNORE_INDEX
from app.io import synthetic
from app.io.bundle import ClassInfo, DropoutConfig, ModelCard, Normalization, build_network, load_bundle, save_bundle, write_card
from app.metrics.scoring import Evaluator
from app.metrics.segmentation import segmentation_scores
from app.plural import plural
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.labelled import analyze_labelled
from app.workflows.train_config import TrainConfig

__all__ = ["TrainConfig", "evaluate_miou", "scene_tensors", "train", "train_step"]


def scene_tensors(scenes: list[synthetic.Scene], norm: Normalization) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes as normalised ``(N, 3, H, W)`` float32 images and ``(N, H, W)`` int64 masks."""
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
    std = torch.tensor(norm.std).view(1, 3, 1, 1)
    masks = torch.from_numpy(np.stack([s.mask for s in scenes])).long()
    return (images - mean) / std, masks


def train_step(
    net: torch.nn.Module, opt: torch.optim.Optimizer, x_all: torch.Tensor, y_all: torch.Tensor, batch: int, rng: np.random.Generator
) -> torch.Tensor:
    """One optimiser step on ``batch`` scenes drawn from ``x_all``/``y_all`` (without replacement), flipped left-right
    half the time and turned by a random multiple of 90°; the step's cross-entropy (ignore index not scored)."""
    idx = torch.from_numpy(rng.choice(len(x_all), batch, replace=False))
    x, y = x_all[idx], y_all[idx]
    if rng.random() < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    k = int(rng.integers(0, 4))
    x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
    loss = F.cross_entropy(net(x), y, ignore_index=IGNORE_INDEX)
    opt.zero_grad(set_to_none=True)
    torch.autograd.backward(loss)
    opt.step()
    return loss


def evaluate_miou(bundle_dir: Path, split: str, count: int, size: int, seed: int) -> dict[str, object]:
    """Segmentation scores of the bundle's deterministic prediction on a synthetic split, with the split's description."""
    bundle = load_bundle(bundle_dir)
    analyzer = Analyzer(bundle)
    evaluator = Evaluator(len(bundle.card.classes), IGNORE_INDEX)
    with torch.inference_mode():
        for scene in synthetic.iter_split(split, count, size=size, seed=seed):
            labelled = analyze_labelled(analyzer, scene.image, scene.mask, AnalysisRequest(samples=0))
            evaluator.add(labelled.analysis, labelled.mask)
    scores = segmentation_scores(evaluator.confusion)
    return {**asdict(scores), "split": split, "images": count, "size": size, "data_seed": seed}


def train(config: TrainConfig, command: str = "") -> ModelCard:
    """Train, save and score a bundle as ``config`` says; returns the final card.

    Args:
        config: The run's settings.
        command: The command line that asked for the run, recorded in the card's provenance.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    channels = list(config.decoder_channels)
    sites = ["head"] + ([f"decoder.blocks.{len(channels) - 2}", f"decoder.blocks.{len(channels) - 1}"] if config.decoder_dropout else [])
    card = ModelCard(
        name=config.name,
        architecture=dict(
            arch="unet", encoder_name=config.encoder, encoder_depth=len(channels), decoder_channels=channels, in_channels=3, classes=len(synthetic.CLASS_NAMES)
        ),
        classes=[ClassInfo(name=n, colour=c) for n, c in zip(synthetic.CLASS_NAMES, synthetic.CLASS_COLOURS, strict=True)],
        dropout=DropoutConfig(sites=sites, rate=config.dropout, mode=config.dropout_mode, trained_with_dropout=True),
    )
    net = build_network(card)
    started = time.perf_counter()
    x_all, y_all = scene_tensors(list(synthetic.iter_split("train", config.train_images, size=config.size, seed=config.seed)), card.normalization)
    print(f"generated {config.train_images} training scenes in {time.perf_counter() - started:.0f}s", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.15)
    net.train()
    for step in range(1, config.steps + 1):
        loss = train_step(net, opt, x_all, y_all, config.batch, rng)
        sched.step()
        if step % 50 == 0 or step == config.steps:
            print(f"step {step}/{config.steps} loss {loss.item():.4f} {time.perf_counter() - started:.0f}s", flush=True)
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"training diverged at step {step}")
    train_seconds = time.perf_counter() - started
    net.eval()
    card.provenance = {
        "command": command or f"seg-uncertainty train --out {config.out} --seed {config.seed} --steps {config.steps}",
        "seed": config.seed,
        "dataset": f"app.synthetic split=train images={config.train_images} size={config.size} seed={config.seed}",
        "steps": config.steps,
        "batch": config.batch,
        "train_seconds": round(train_seconds, 1),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {plural(torch.get_num_threads(), 'thread')}",
        "weights_dtype": "float16",
    }
    save_bundle(card, net.model, config.out)
    metrics = {"test": evaluate_miou(config.out, "test", config.test_images, config.size, config.seed)}
    card.provenance["metrics"] = metrics
    write_card(card, config.out)
    print(f"test mIoU {metrics['test']['miou']:.4f} in {train_seconds:.0f}s of training", flush=True)
    return card
