"""``train``: train the default model from scratch on the synthetic scenes."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from app.cli.common import error

NAME = "train"
HELP = "train the default model on synthetic scenes"

_HELP = {
    "name": "bundle name written to its card",
    "seed": "seed of the data, the initialisation and the batches",
    "steps": "optimiser steps",
    "batch": "scenes per step",
    "train_images": "training scenes generated",
    "test_images": "test scenes the bundle is scored on",
    "lr": "peak learning rate of the one-cycle schedule",
    "encoder": "smp encoder name (random initialisation, nothing downloaded)",
    "dropout_mode": "drop whole channels or single elements",
    "size": "training crop side in pixels",
    "dropout": "MC dropout rate",
    "decoder_dropout": "also put dropout after the last two decoder blocks",
    "threads": "torch threads (0: leave as is)",
    "out": "bundle folder to write",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per field of :class:`~app.workflows.train.TrainConfig`, with its default."""
    from app.workflows.train_config import TrainConfig

    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            p.add_argument(flag, action="store_true", help=_HELP.get(f.name))
        elif isinstance(value, tuple):
            p.add_argument(flag, default=",".join(str(v) for v in value), help="comma-separated integers")
        elif f.name == "dropout_mode":
            p.add_argument(flag, choices=["channel", "element"], default=value, help=_HELP.get(f.name))
        else:
            p.add_argument(flag, type=type(value), default=value, help=_HELP.get(f.name))


def run(args: argparse.Namespace) -> int:
    """Train and write the bundle; exit 2 on a bad setting."""
    from app.workflows.train import train
    from app.workflows.train_config import TrainConfig

    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    try:
        values["decoder_channels"] = tuple(int(c) for c in str(args.decoder_channels).split(","))
    except ValueError:
        error(f"--decoder-channels must be comma-separated integers, got {args.decoder_channels!r}")
        return 2
    values["out"] = Path(args.out)
    train(TrainConfig(**values), command="seg-uncertainty " + " ".join(sys.argv[1:]))
    return 0
