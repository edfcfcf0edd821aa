"""A user's own model folder → a complete card, with every assumption spelled out.

A folder is a model when it holds ``model.json`` (our card) or ``config.json`` (smp's ``save_pretrained``) beside
``model.safetensors``. A card without ``architecture`` takes it from ``config.json``; then whatever else the card
leaves out (or all of it, with no card) gets a default, and each default becomes a note for the user:
class names ``class 0`` …, a fixed palette, ImageNet normalisation, channel dropout added at inference before the
head (``trained_with_dropout: false``), full-resolution analysis. A torchvision card without ``dropout`` gets the
model's own (see :mod:`app.io.torchvision_models`). Download keys are ignored, and said so.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any

from app.io.card import CARD_FILE, BundleError, DropoutConfig, InputSpec, ModelCard, Normalization, architecture_classes, read_json, validate_card
from app.io.smp_format import CONFIG_FILE, architecture_from_config, disagreements, ignored_downloads, read_config
from app.io.torchvision_models import default_dropout, is_torchvision

__all__ = ["MAKE_A_CARD", "complete_card", "default_colours", "folder_card"]

MAKE_A_CARD = "write a card with `seg-uncertainty export --help`, e.g. `seg-uncertainty export DIR --classes a,b,c --out DIR`"
_PALETTE = (
    *("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#fabebe"),
    *("#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1", "#000075", "#808080"),
)


def default_colours(n: int) -> list[str]:
    """``n`` distinct display colours: a fixed 20-colour palette, then golden-angle hues."""
    colours = list(_PALETTE[:n])
    for i in range(len(colours), n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.9)
        colours.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return colours


def _defaults(card: dict[str, Any], notes: list[str]) -> None:
    """Fill what a user's folder left out, noting each default."""
    arch = card["architecture"]
    if "classes" not in card:
        n = architecture_classes(arch)
        card["classes"] = [{"name": f"class {i}", "colour": c} for i, c in enumerate(default_colours(n))]
        notes.append(f"classes: none given; named 'class 0' … 'class {n - 1}' with default colours; {MAKE_A_CARD}")
    if "normalization" not in card:
        card["normalization"] = Normalization().model_dump(mode="json")
        notes.append("normalization: none given; ImageNet mean/std assumed")
    if "dropout" not in card and not is_torchvision(arch):
        card["dropout"] = DropoutConfig(trained_with_dropout=False).model_dump(mode="json")
        notes.append("dropout: none given; channel dropout (rate 0.2) added at inference before the segmentation head (trained_with_dropout: false)")
    if "input" not in card:
        card["input"] = InputSpec().model_dump(mode="json")
        notes.append("input.working_size: none given; images are analysed at full resolution")


def complete_card(
    raw: object, config: dict[str, Any] | None, name: str, classes: list[str] | None = None, arch: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Complete a card's JSON from an smp config, flags and defaults.

    Args:
        raw: The card's JSON (``None``: no card).
        config: The folder's smp ``config.json`` (``None``: none).
        name: The model's name when the card gives none.
        classes: Class names from a flag; they replace the card's classes (colours from the default palette).
        arch: Architecture from a flag (``arch`` only, e.g. a torchvision builder) when the card has none.

    Returns:
        The completed JSON (still to be validated) and the notes on what was assumed or ignored.

    Raises:
        BundleError: the card is not an object, or it and ``config.json`` disagree.
    """
    if raw is not None and not isinstance(raw, dict):
        raise BundleError(f"the card must be a JSON object, got {type(raw).__name__}")
    card: dict[str, Any] = dict(raw or {})
    notes: list[str] = []
    user_folder = "architecture" not in card
    config_arch = architecture_from_config(config) if config is not None else None
    if classes:
        card["classes"] = [{"name": c, "colour": colour} for c, colour in zip(classes, default_colours(len(classes)), strict=True)]
    if "architecture" not in card and config_arch is not None:
        card["architecture"] = config_arch
    elif "architecture" not in card and arch is not None:
        card["architecture"] = {"arch": arch, "classes": len(card.get("classes", []))}
    elif config_arch is not None and isinstance(card.get("architecture"), dict):
        bad = disagreements(card["architecture"], config_arch)
        if bad:
            raise BundleError(f"{CARD_FILE} and {CONFIG_FILE} disagree on architecture {', '.join(bad)}")
    architecture = card.get("architecture")
    if not isinstance(architecture, dict):
        return card, notes
    card.setdefault("name", name)
    if user_folder:
        _defaults(card, notes)
    if "dropout" not in card and is_torchvision(architecture):
        card["dropout"] = default_dropout(architecture).model_dump(mode="json")
        d = card["dropout"]
        how = "the model's own trained dropout" if d["trained_with_dropout"] else "dropout added at inference (trained_with_dropout: false)"
        notes.append(f"dropout: none given; {how} at {', '.join(d['sites'])}, rate {d['rate']}, {d['mode']} mode")
    for key, value in ignored_downloads(architecture).items():
        notes.append(f"architecture.{key}={value!r} ignored: weights come from model.safetensors, nothing is downloaded")
    return card, notes


def folder_card(folder: Path) -> tuple[ModelCard, list[str]]:
    """The card of a model folder (``model.json`` and/or smp ``config.json``) and the notes on what was assumed."""
    card_path, config_path = folder / CARD_FILE, folder / CONFIG_FILE
    raw = read_json(card_path) if card_path.exists() else None
    config = read_config(config_path) if config_path.exists() else None
    where = card_path if raw is not None else config_path
    try:
        completed, notes = complete_card(raw, config, folder.resolve().name or "model")
    except BundleError as exc:
        raise BundleError(f"{folder}: {exc}") from exc
    return validate_card(completed, where), notes
