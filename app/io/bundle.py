"""Model folders on disk: a bundle (``model.json`` card + ``model.safetensors``, plus smp's ``config.json`` for smp
models, so ``smp.from_pretrained`` reads it too), or an smp ``save_pretrained`` folder, with or without a card.

Weights are read with safetensors only, never unpickled.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from app.engine.device import place
from app.engine.network import SegmentationNet
from app.engine.selfie_net import SELFIE_STRIDE, build_selfie, is_selfie
from app.io.card import (
    CARD_FILE,
    BundleError,
    ClassInfo,
    DropoutConfig,
    ImageReference,
    InputSpec,
    ModelCard,
    Normalization,
    read_json,
    read_safetensors,
    validate_card,
)
from app.io.density import read_density
from app.io.ensemble import ensemble_card_at, load_ensemble
from app.io.resources import models_dir
from app.io.smp_format import CONFIG_FILE, build_smp, write_config
from app.io.torchvision_models import build_torchvision, is_torchvision, strip_aux
from app.io.user_model import MAKE_A_CARD, folder_card
from app.maps.density import FeatureDensity

__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "Bundle",
    "BundleError",
    "ClassInfo",
    "DropoutConfig",
    "ImageReference",
    "InputSpec",
    "ModelCard",
    "Normalization",
    "build_network",
    "load_bundle",
    "load_weights",
    "read_card",
    "resolve_bundle_dir",
    "save_bundle",
    "write_card",
]

WEIGHTS_FILE = "model.safetensors"
log = logging.getLogger("app.io.bundle")


@dataclass
class Bundle:
    """A loaded bundle: its card, the ready network, where it lives, what was assumed to load it, and its fitted
    feature density (``None`` until ``fit-density`` fits one)."""

    card: ModelCard
    net: SegmentationNet
    path: Path
    notes: list[str] = field(default_factory=list)
    density: FeatureDensity | None = None

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.card.classes]


def read_card(path: Path) -> ModelCard:
    """Read and validate a card file strictly, naming the bad field on failure."""
    return validate_card(read_json(path), path)


def build_network(card: ModelCard) -> SegmentationNet:
    """Build the untrained network of a card (smp, torchvision or MediaPipe's selfie segmenter) with its dropout sites."""
    d = card.dropout
    if is_torchvision(card.architecture):
        from app.engine.torchvision_net import TorchvisionNet

        model, stride = build_torchvision(card.architecture)
        try:
            return TorchvisionNet(model, d.sites, d.rate, d.mode, stride)
        except ValueError as exc:
            raise BundleError(f"dropout.sites: {exc}") from exc
    if is_selfie(card.architecture):
        try:
            selfie = build_selfie(card.architecture)
        except ValueError as exc:
            raise BundleError(f"architecture: {exc}") from exc
        try:
            return SegmentationNet(selfie, d.sites, d.rate, d.mode, stride=SELFIE_STRIDE)
        except ValueError as exc:
            raise BundleError(f"dropout.sites: {exc}") from exc
    model = build_smp(card.architecture)
    try:
        return SegmentationNet(model, d.sites, d.rate, d.mode)
    except ValueError as exc:
        raise BundleError(f"dropout.sites: {exc}") from exc


def resolve_bundle_dir(name_or_dir: str | Path) -> Path:
    """A model folder from a path or from a name under ``models/``.

    Raises:
        BundleError: saying where it looked, once, and how to make a card.
    """
    path = Path(name_or_dir)
    candidates = [path]
    named = models_dir() / path
    if not path.is_absolute() and named.resolve() != path.resolve():
        candidates.append(named)
    for folder in candidates:
        if folder.is_dir() and ((folder / CARD_FILE).exists() or (folder / CONFIG_FILE).exists()):
            return folder
    if path.is_file():
        raise BundleError(f"{path} is a file; --model takes a folder. To use a weights file, {MAKE_A_CARD}")
    found = next((c for c in candidates if c.is_dir()), None)
    if found is not None:
        raise BundleError(
            f"no model bundle at {found}: it has neither {CARD_FILE} (a card) nor {CONFIG_FILE} (smp's model.save_pretrained) "
            f"beside {WEIGHTS_FILE}; {MAKE_A_CARD}"
        )
    looked = " or ".join(str(c) for c in candidates)
    raise BundleError(f"no model bundle: no folder {looked}; pass a bundle folder, an smp save_pretrained folder or a name under models/")


def load_weights(net: SegmentationNet, weights: Path, card_name: str = CARD_FILE) -> list[str]:
    """Load a safetensors state dict strictly into ``net.model`` (float16 stored weights become float32).

    Returns:
        Notes on what was left out (a torchvision model's training-only auxiliary classifier).
    """
    raw_state = read_safetensors(weights)
    state, dropped = strip_aux({k: v.float() if v.is_floating_point() else v for k, v in raw_state.items()}, net.model)
    try:
        net.model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"{weights} does not match the architecture in {card_name}: {exc}") from exc
    return [f"{dropped} aux_classifier tensors in {weights.name} left out: the auxiliary head only trains"] if dropped else []


def load_bundle(name_or_dir: str | Path = "default", device: str | torch.device = "cpu") -> Bundle:
    """Load a model folder strictly and put it in eval mode on ``device``.

    What had to be assumed (an smp folder without a card, ignored download keys …) is logged as a warning,
    kept in :attr:`Bundle.notes` and recorded under ``provenance["assumed"]`` of the loaded card.

    Raises:
        BundleError: with the file and field at fault.
    """
    path = resolve_bundle_dir(name_or_dir)
    ensemble = ensemble_card_at(path)
    if ensemble is not None:
        combined, members = load_ensemble(path, ensemble, _member, device)
        return Bundle(combined, members, path)
    card, notes = folder_card(path)
    net = build_network(card)
    notes += load_weights(net, path / WEIGHTS_FILE, CARD_FILE if (path / CARD_FILE).exists() else CONFIG_FILE)
    if notes:
        card.provenance["assumed"] = list(notes)
        for note in notes:
            log.warning("%s: %s", path, note)
    place(net.eval(), device)
    return Bundle(card, net, path, notes, read_density(path, card))


def _member(path: Path, device: str | torch.device) -> tuple[ModelCard, SegmentationNet]:
    bundle = load_bundle(path, device)
    return bundle.card, bundle.net


def save_bundle(card: ModelCard, model: torch.nn.Module, out_dir: Path, half: bool = True) -> Path:
    """Write ``card`` and ``model``'s state dict (fp16 when ``half``) as a bundle, with smp's ``config.json`` for smp models."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {}
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        state[key] = tensor.half() if half and tensor.is_floating_point() else tensor
    save_file(state, str(out_dir / WEIGHTS_FILE))
    if not write_config(model, out_dir):
        (out_dir / CONFIG_FILE).unlink(missing_ok=True)
    write_card(card, out_dir)
    return out_dir


def write_card(card: ModelCard, out_dir: Path) -> None:
    """Write ``model.json`` (pretty, stable key order).

    Raises:
        BundleError: ``out_dir`` holds an ensemble's card (:mod:`app.io.ensemble`), which a model card must not replace.
    """
    if ensemble_card_at(out_dir) is not None:
        raise BundleError(f"{out_dir / CARD_FILE} is an ensemble's card and is not overwritten; edit it by hand or work on its members")
    (out_dir / CARD_FILE).write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
