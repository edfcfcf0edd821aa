"""The ``seg-uncertainty`` command line: each command parses, calls one library function and prints.

Every command is a module here with ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``;
the modules import the library only inside ``run``, so ``--help`` starts fast.
"""

from __future__ import annotations

import argparse
from types import ModuleType

from app.cli import analyze, calibrate, evaluate, export, fit_density, rank, serve, train

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: tuple[ModuleType, ...] = (analyze, rank, train, export, serve, evaluate, calibrate, fit_density)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(prog="seg-uncertainty", description="Per-pixel uncertainty maps for semantic segmentation.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``seg-uncertainty`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))
