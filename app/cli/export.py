"""``export``: turn an smp state-dict file and a card into a bundle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.common import error

NAME = "export"
HELP = "turn an smp state-dict file into a bundle"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("weights", type=Path, help=".safetensors (or .pt/.pth) state dict of the smp model")
    p.add_argument("--card", type=Path, required=True, help="model.json describing architecture, classes, dropout")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")


def run(args: argparse.Namespace) -> int:
    """Exit 0 with the bundle written, 2 when the weights or card are unusable."""
    from app.io.bundle import BundleError
    from app.io.export import export_state_dict_file

    try:
        out = export_state_dict_file(args.weights, args.card, args.out)
    except (BundleError, ValueError, OSError) as exc:
        error(exc)
        return 2
    print(f"wrote bundle {out}", file=sys.stderr)
    return 0
