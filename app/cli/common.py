"""Arguments and helpers several commands share."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from app.defaults import DEFAULT_MODEL, DEFAULT_SAMPLES, DEFAULT_SEED, IGNORE_INDEX, TTA_MODES, TtaMode

if TYPE_CHECKING:
    from app.io.card import ModelCard
    from app.workflows.analyzer import Analyzer

__all__ = [
    "SAMPLES_DEFAULT_HELP",
    "add_analysis_args",
    "add_data_args",
    "add_model_args",
    "error",
    "load_analyzer",
    "memory_size",
    "progress_bar",
    "samples_for",
    "tta_for",
]

T = TypeVar("T")
SAMPLES_DEFAULT_HELP = f"default: the model card's default_samples, else {DEFAULT_SAMPLES}"


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model`` and ``--device``."""
    p.add_argument("--model", default=DEFAULT_MODEL, help="bundle name under models/, a bundle folder, or a folder written by smp's model.save_pretrained")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def add_data_args(p: argparse.ArgumentParser) -> None:
    """Arguments of the commands that read a labelled folder (``evaluate``, ``calibrate``)."""
    p.add_argument("--images", type=Path, required=True, help="folder of images")
    p.add_argument("--masks", type=Path, required=True, help="folder of single-channel PNG masks (class indices), matched by file stem")
    p.add_argument("--ignore-index", type=int, default=IGNORE_INDEX, help="mask value that is not scored")
    add_model_args(p)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the MC dropout masks (each image's masks also depend on its name)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def progress_bar(desc: str, quiet: bool) -> Callable[[Sequence[T]], Iterable[T]]:
    """Wrap a list in a tqdm bar on stderr (none when ``quiet``)."""
    from tqdm import tqdm

    def wrap(items: Sequence[T]) -> Iterable[T]:
        bar: Iterable[T] = tqdm(items, desc=desc, unit="img", file=sys.stderr, disable=quiet)
        return bar

    return wrap


def add_tta_arg(p: argparse.ArgumentParser) -> None:
    """``--tta``: the test-time augmentation (every ensemble member runs every pass)."""
    p.add_argument(
        "--tta",
        choices=TTA_MODES,
        default=None,
        help="test-time augmentation (default: the model card's default_tta, else none): flips (4 passes), flips+scales (12), "
        "photometric (4, seeded); each pass's probabilities are mapped back "
        "and pooled with its --samples MC samples into the same maps",
    )


def add_analysis_args(p: argparse.ArgumentParser) -> None:
    """What an analysis of images asks for: ``--samples``, ``--seed``, ``--model``, ``--device``, ``--calibrated``, ``--tta``."""
    p.add_argument("--samples", type=int, default=None, help=f"MC dropout samples T (0: deterministic only; {SAMPLES_DEFAULT_HELP})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the MC dropout masks (the same masks for every image)")
    add_model_args(p)
    p.add_argument("--calibrated", action="store_true", help="apply the bundle's temperature")
    add_tta_arg(p)


_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*(?:([KMG])(?:I?B)?|B)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def memory_size(text: str) -> int:
    """An argparse type: bytes, as a whole number or a number with ``K``, ``M`` or ``G`` (binary: ``512M``, ``512MiB`` and
    ``512MB`` are 512 MiB), from 1 MiB to 1 TiB.

    Raises:
        argparse.ArgumentTypeError: anything else, naming the accepted forms.
    """
    match = _SIZE.fullmatch(text)
    value = float(match[1]) * _UNITS[(match[2] or "").upper()] if match else 0.0
    if not 2**20 <= value <= 2**40:
        raise argparse.ArgumentTypeError(f"a memory size is bytes or a number with K, M or G (512M = 512 MiB), from 1M to 1024G; got {text!r}")
    return int(value)


def error(message: object) -> None:
    """Print ``error: message`` on stderr."""
    print(f"error: {message}", file=sys.stderr)


def samples_for(requested: int | None, card: ModelCard) -> int:
    """MC samples of a run: ``--samples`` when given, else the model's default (its card's ``default_samples``, else ``DEFAULT_SAMPLES``)."""
    return card.samples_default() if requested is None else requested


def tta_for(requested: TtaMode | None, card: ModelCard) -> TtaMode:
    """Test-time augmentation of a run: ``--tta`` when given, else the model's default (its card's ``default_tta``, else none)."""
    return card.tta_default() if requested is None else requested


def load_analyzer(model: str, device: str, **kwargs: Any) -> Analyzer:
    """The analyser of bundle ``model`` on ``device``.

    Raises:
        app.io.bundle.BundleError: the bundle is missing or malformed.
        ValueError: an unusable device.
    """
    from app.engine.device import resolve_device
    from app.io.bundle import load_bundle
    from app.workflows.analyzer import Analyzer

    resolved = resolve_device(device)
    return Analyzer(load_bundle(model, resolved), resolved, **kwargs)
