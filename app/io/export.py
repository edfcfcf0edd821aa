"""Turn a user's trained smp model (object or state-dict file) into a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from safetensors.torch import load_file

from app.io.bundle import BundleError, ModelCard, build_network, read_card, save_bundle


def export_model(model: torch.nn.Module, card: ModelCard, out_dir: Path, half: bool = False) -> Path:
    """Write ``model`` (an smp model built as ``card.architecture`` says) as a bundle.

    The state dict is checked against a fresh network built from the card, so a
    bundle that would not load is never written.

    Args:
        model: The trained smp model.
        card: Architecture, classes, normalisation and dropout placement.
        out_dir: Bundle folder to write.
        half: Store weights as float16.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    check = build_network(card)
    try:
        check.model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"the model's weights do not match card.architecture: {exc}") from exc
    card = card.model_copy(deep=True)
    card.provenance.setdefault("exported_from", type(model).__name__)
    return save_bundle(card, check.model, out_dir, half=half)


def export_state_dict_file(weights: Path, card_path: Path, out_dir: Path, half: bool = False) -> Path:
    """Export a state-dict file plus a ``model.json`` card to a bundle.

    ``.safetensors`` files are read directly; ``.pt``/``.pth`` files are read
    with ``torch.load(weights_only=True)`` (no arbitrary unpickling).
    """
    card = read_card(card_path)
    if not weights.exists():
        raise BundleError(f"{weights} not found")
    if weights.suffix == ".safetensors":
        state = load_file(str(weights))
    elif weights.suffix in (".pt", ".pth", ".bin"):
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BundleError(f"{weights} is not a plain state dict: {exc}") from exc
        if not isinstance(state, dict):
            raise BundleError(f"{weights} holds a {type(state).__name__}, not a state dict")
        state = cast(dict[str, torch.Tensor], state.get("state_dict", state))
    else:
        raise BundleError(f"{weights}: expected a .safetensors, .pt or .pth state dict")
    net = build_network(card)
    try:
        net.model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"{weights} does not match the architecture in {card_path}: {exc}") from exc
    card.provenance.setdefault("exported_from", str(weights.name))
    return save_bundle(card, net.model, out_dir, half=half)
