"""``export``: make a bundle from your own model (an smp save_pretrained folder, or a state-dict file and a card)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.common import error

NAME = "export"
HELP = "make a bundle (or a card) from your own smp or torchvision model"
EPILOG = """examples:
  a folder written by smp's model.save_pretrained(dir), a card beside it:
    seg-uncertainty export my_unet/ --classes background,road,car --out my_unet/
  a torchvision model's state dict:
    seg-uncertainty export deeplab.pth --arch torchvision.models.segmentation.deeplabv3_mobilenet_v3_large \\
        --classes background,road,car --out models/deeplab
  a state dict and a hand-written card (model.json; see the README, "Your own model"):
    seg-uncertainty export weights.safetensors --card card.json --out models/mine

What the card leaves out is filled in and printed: class names 'class 0' ..., ImageNet normalisation, channel
dropout added at inference before the head (torchvision: the model's own dropout layers), full-resolution analysis.
Download keys (encoder_weights, weights, weights_backbone) are ignored: nothing is downloaded."""


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if len(names) < 2 or not all(names):
        raise argparse.ArgumentTypeError("give at least two comma-separated class names")
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("source", type=Path, help="smp save_pretrained folder, or a .safetensors/.pt/.pth state dict")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write (the source folder itself: write only model.json beside it)")
    p.add_argument("--card", type=Path, help="a card (model.json): architecture, classes, normalisation, dropout; with a config.json it may omit any")
    p.add_argument("--classes", type=_names, help="class names in output order, comma-separated (colours from a fixed palette)")
    p.add_argument("--arch", help="architecture when there is no card or config.json, e.g. torchvision.models.segmentation.fcn_resnet50")
    p.add_argument("--name", help="model name (default: the folder's or the file's name)")
    p.add_argument("--half", action="store_true", help="store the weights as float16")


def run(args: argparse.Namespace) -> int:
    """Exit 0 with the bundle written, 2 when the weights or card are unusable."""
    from app.io.bundle import BundleError
    from app.io.export import export_source

    if args.arch is not None and args.classes is None and args.card is None:
        error("--arch needs --classes (or a --card listing them)")
        return 2
    try:
        out, notes = export_source(args.source, args.out, args.card, args.classes, args.arch, args.name, args.half)
    except (BundleError, ValueError, OSError) as exc:
        error(exc)
        return 2
    for note in notes:
        print(f"assumed: {note}", file=sys.stderr)
    print(f"wrote bundle {out}", file=sys.stderr)
    return 0
