"""Turn a user's trained model into a bundle: an smp model object, an smp ``save_pretrained`` folder, or a
state-dict file (smp or torchvision) plus a card or flags."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch

from app.io.bundle import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, BundleError, ModelCard, build_network, save_bundle, write_card
from app.io.card import read_json, read_safetensors, validate_card
from app.io.ensemble import ensemble_card_at
from app.io.smp_format import read_config
from app.io.torchvision_models import strip_aux
from app.io.user_model import complete_card

__all__ = ["export_model", "export_source", "export_state_dict_file", "read_state_file"]


def export_model(model: torch.nn.Module, card: ModelCard, out_dir: Path, half: bool = False) -> Path:
    """Write ``model`` (built as ``card.architecture`` says) as a bundle.

    The state dict is checked against a fresh network built from the card, so a
    bundle that would not load is never written.

    Args:
        model: The trained model.
        card: Architecture, classes, normalisation and dropout placement.
        out_dir: Bundle folder to write.
        half: Store weights as float16.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    check = build_network(card)
    state, _ = strip_aux(state, check.model)
    try:
        check.model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"the model's weights do not match card.architecture: {exc}") from exc
    card = card.model_copy(deep=True)
    card.provenance.setdefault("exported_from", type(model).__name__)
    return save_bundle(card, check.model, out_dir, half=half)


def read_state_file(weights: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` (read directly) or ``.pt``/``.pth``/``.bin`` (``torch.load(weights_only=True)``, no arbitrary unpickling)."""
    if weights.suffix == ".safetensors":
        return read_safetensors(weights)
    if not weights.exists():
        raise BundleError(f"{weights} not found")
    if weights.suffix not in (".pt", ".pth", ".bin"):
        raise BundleError(f"{weights}: expected a .safetensors, .pt or .pth state dict")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BundleError(f"{weights} is not a plain state dict: {exc}") from exc
    if not isinstance(state, dict):
        raise BundleError(f"{weights} holds a {type(state).__name__}, not a state dict")
    return cast(dict[str, torch.Tensor], state.get("state_dict", state))


def export_source(
    source: Path,
    out_dir: Path,
    card_path: Path | None = None,
    classes: list[str] | None = None,
    arch: str | None = None,
    name: str | None = None,
    half: bool = False,
) -> tuple[Path, list[str]]:
    """Export a model folder or a state-dict file to a bundle, checking that the weights load first.

    Args:
        source: An smp ``save_pretrained`` folder (``config.json`` + ``model.safetensors``, optionally ``model.json``)
            or a state-dict file.
        out_dir: Bundle folder to write; when it is ``source`` itself only ``model.json`` is written beside the weights.
        card_path: A card to use (it may leave out what ``config.json``, the flags or the defaults supply).
        classes: Class names (colours from the default palette); they replace the card's.
        arch: Architecture when neither a card nor ``config.json`` gives one, e.g. ``torchvision.models.segmentation.fcn_resnet50``.
        name: The model's name (default: the folder's or the file's).
        half: Store weights as float16.

    Returns:
        The bundle folder and the notes on what was assumed or ignored.
    """
    config = None
    raw: object = read_json(card_path) if card_path is not None else None
    if source.is_dir() and ensemble_card_at(source) is not None:
        raise BundleError(f"{source} is an ensemble; export takes one model: export its members one by one")
    if source.is_dir():
        weights = source / WEIGHTS_FILE
        if (source / CONFIG_FILE).exists():
            config = read_config(source / CONFIG_FILE)
        if raw is None and (source / CARD_FILE).exists():
            raw = read_json(source / CARD_FILE)
        if raw is None and config is None:
            raise BundleError(f"{source} has neither {CARD_FILE} nor {CONFIG_FILE} (smp's model.save_pretrained); pass --card or --arch with --classes")
    else:
        weights = source
    if name is not None and isinstance(raw, dict):
        raw = {**raw, "name": name}
    completed, notes = complete_card(raw, config, name or (source.name if source.is_dir() else source.stem), classes, arch)
    card = validate_card(completed, card_path or source)
    net = build_network(card)
    state, dropped = strip_aux({k: v.float() if v.is_floating_point() else v for k, v in read_state_file(weights).items()}, net.model)
    if dropped:
        notes.append(f"{dropped} aux_classifier tensors left out: the auxiliary head only trains")
    try:
        net.model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"{weights} does not match the architecture {card.architecture}: {exc}") from exc
    card.provenance.setdefault("exported_from", weights.name if not source.is_dir() else str(source.name))
    if notes:
        card.provenance["assumed"] = list(notes)
    if source.is_dir() and out_dir.resolve() == source.resolve():
        write_card(card, out_dir)
        return out_dir, notes
    return save_bundle(card, net.model, out_dir, half=half), notes


def export_state_dict_file(weights: Path, card_path: Path, out_dir: Path, half: bool = False) -> Path:
    """Export a state-dict file plus a ``model.json`` card to a bundle."""
    return export_source(weights, out_dir, card_path=card_path, half=half)[0]
