"""smp's own save format: ``model.save_pretrained(dir)`` writes ``config.json`` (``_model_class`` + the init
arguments) beside ``model.safetensors``; ``smp.from_pretrained(dir)`` reads it back.

Our bundles write the same ``config.json``, so smp reads them too, and an smp folder is a model folder here.
Download keys (``encoder_weights`` …) are accepted and ignored: encoders are always built with
``encoder_weights=None`` and the weights come from the folder, so nothing is ever downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import segmentation_models_pytorch as smp
from torch import nn

from app.io.card import BundleError, read_json

__all__ = ["CONFIG_FILE", "DOWNLOAD_KEYS", "architecture_from_config", "build_smp", "disagreements", "ignored_downloads", "read_config", "write_config"]

CONFIG_FILE = "config.json"
DOWNLOAD_KEYS = ("encoder_weights", "weights", "weights_backbone", "pretrained", "pretrained_backbone")
_CLASS_KEY = "_model_class"


def _arch_names() -> dict[str, str]:
    """smp class name → ``create_model`` arch key, e.g. ``"Unet"`` → ``"unet"``."""
    return {cls.__name__: key for key, cls in smp.MODEL_ARCHITECTURES_MAPPING.items()}


def read_config(path: Path) -> dict[str, Any]:
    """Read an smp ``config.json``.

    Raises:
        BundleError: absent, not JSON, or without ``_model_class`` (not written by smp's ``save_pretrained``).
    """
    raw = read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get(_CLASS_KEY), str):
        raise BundleError(f"{path} has no '{_CLASS_KEY}': not an smp save_pretrained config (model.save_pretrained(dir) writes one)")
    return cast(dict[str, Any], raw)


def architecture_from_config(config: dict[str, Any], where: Path | str = CONFIG_FILE) -> dict[str, Any]:
    """A card's ``architecture`` (``smp.create_model`` arguments) from an smp config.

    Keys starting with ``_`` are smp's bookkeeping and are dropped; download keys are kept (and ignored when building).
    """
    name = config[_CLASS_KEY]
    arch = _arch_names().get(name)
    if arch is None:
        raise BundleError(f"{where}: _model_class {name!r} is not an smp architecture ({', '.join(sorted(_arch_names()))})")
    return {"arch": arch, **{k: v for k, v in config.items() if not k.startswith("_")}}


def ignored_downloads(architecture: dict[str, Any]) -> dict[str, Any]:
    """The download keys of ``architecture`` that are set (they are ignored)."""
    return {k: architecture[k] for k in DOWNLOAD_KEYS if architecture.get(k) is not None}


def disagreements(card_arch: dict[str, Any], config_arch: dict[str, Any]) -> list[str]:
    """Keys set in both the card's architecture and ``config.json`` with different values (download keys aside)."""
    return sorted(k for k in card_arch.keys() & config_arch.keys() if k not in DOWNLOAD_KEYS and card_arch[k] != config_arch[k])


def build_smp(architecture: dict[str, Any]) -> nn.Module:
    """Build an untrained smp model, never downloading encoder weights.

    Raises:
        BundleError: ``smp.create_model`` rejects the arguments.
    """
    args = {k: v for k, v in architecture.items() if k not in DOWNLOAD_KEYS}
    try:
        model: nn.Module = smp.create_model(**args, encoder_weights=None)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"architecture: smp.create_model rejected {args}: {exc}") from exc
    return model


def write_config(model: nn.Module, out_dir: Path) -> bool:
    """Write ``config.json`` as ``model.save_pretrained`` would (``encoder_weights`` null); ``False`` when ``model`` is not an smp model."""
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or type(model).__name__ not in _arch_names():
        return False
    body = {_CLASS_KEY: type(model).__name__, **config, "encoder_weights": None}
    (out_dir / CONFIG_FILE).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return True
