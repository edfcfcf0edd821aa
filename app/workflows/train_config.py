"""The settings of a training run, importable without PyTorch (the CLI builds its flags from them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; the defaults train the shipped model.

    Attributes:
        out: Bundle folder to write.
        name: Bundle name.
        seed: Seed of the data, the initialisation and the batches.
        steps: Optimiser steps.
        batch: Scenes per step.
        size: Side of the training scenes in pixels.
        train_images: Training scenes generated.
        test_images: Test scenes the bundle is scored on.
        lr: Peak learning rate of the one-cycle schedule.
        encoder: smp encoder name (random init).
        decoder_channels: U-Net decoder channels.
        dropout: MC-dropout rate.
        dropout_mode: ``"channel"`` or ``"element"``.
        decoder_dropout: Also put dropout after the last two decoder blocks.
        threads: Torch threads (0: leave as is).
    """

    out: Path = Path("models/default")
    name: str = "default"
    seed: int = 0
    steps: int = 3000
    batch: int = 16
    size: int = 128
    train_images: int = 4000
    test_images: int = 200
    lr: float = 3e-3
    encoder: str = "mobilenet_v2"
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 16)
    dropout: float = 0.2
    dropout_mode: str = "channel"
    decoder_dropout: bool = False
    threads: int = 0
