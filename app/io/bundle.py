"""Model bundles on disk: ``model.json`` (the card) + ``model.safetensors``.

Weights are read with safetensors only, never unpickled.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from app.engine.dropout import DROPOUT_MODES
from app.engine.network import SegmentationNet
from app.io.resources import models_dir

CARD_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


class BundleError(ValueError):
    """A bundle is missing, malformed or does not match its weights."""


class ClassInfo(BaseModel):
    """One output class."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, description="Class name.")
    colour: str = Field(description="Display colour as #rrggbb.")

    @field_validator("colour")
    @classmethod
    def _colour(cls, value: str) -> str:
        if not _COLOUR.match(value):
            raise ValueError(f"colour must look like #rrggbb, got {value!r}")
        return value.lower()


class Normalization(BaseModel):
    """Input normalisation: ``(pixel / 255 - mean) / std`` per RGB channel."""

    model_config = ConfigDict(extra="forbid")
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @field_validator("std")
    @classmethod
    def _positive(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError("every std must be > 0")
        return value


class DropoutConfig(BaseModel):
    """Where MC dropout sits, its rate, and whether the model was trained with it."""

    model_config = ConfigDict(extra="forbid")
    sites: list[str] = Field(default_factory=lambda: ["head"], description="'head' or dotted submodule paths.")
    rate: float = Field(0.2, ge=0.0, lt=1.0)
    mode: str = "channel"
    trained_with_dropout: bool = Field(True, description="False: dropout is added at inference only.")

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in DROPOUT_MODES:
            raise ValueError(f"mode must be one of {DROPOUT_MODES}")
        return value


class InputSpec(BaseModel):
    """The scale the model works at."""

    model_config = ConfigDict(extra="forbid")
    working_size: int | None = Field(
        None, ge=16, description="Long side in pixels that inputs are resized to before analysis (None: analyse at full resolution)."
    )


class ImageReference(BaseModel):
    """Image-level reference for out-of-distribution verdicts: per map, the sorted image means on a validation split."""

    model_config = ConfigDict(extra="forbid")
    split: str = Field(description="What the reference images are.")
    images: int = Field(ge=1)
    samples: int = Field(ge=0, description="MC samples used for the reference analyses.")
    means: dict[str, list[float]] = Field(description="Map name → sorted image means.")

    @field_validator("means")
    @classmethod
    def _sorted(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        return {name: sorted(values) for name, values in value.items()}


class ModelCard(BaseModel):
    """The contents of ``model.json``."""

    model_config = ConfigDict(extra="forbid")
    format_version: int = Field(1, ge=1, le=1)
    name: str = Field(min_length=1)
    architecture: dict[str, Any] = Field(description="Keyword arguments of smp.create_model (arch, encoder_name, classes, ...).")
    classes: list[ClassInfo] = Field(min_length=2)
    normalization: Normalization = Field(default_factory=Normalization)
    dropout: DropoutConfig = Field(default_factory=DropoutConfig)
    input: InputSpec = Field(default_factory=InputSpec)
    domain: str = Field("", description="Plain-language description of the data the model was trained on.")
    temperature: float = Field(1.0, gt=0.0, description="Calibration temperature; 1.0 until calibrated.")
    calibration: dict[str, Any] | None = None
    image_reference: ImageReference | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)

    @field_validator("architecture")
    @classmethod
    def _arch(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "arch" not in value:
            raise ValueError("needs 'arch' (e.g. 'unet')")
        if value.get("encoder_weights") not in (None,):
            raise ValueError("encoder_weights must be absent or null: bundles never download weights")
        return value

    @model_validator(mode="after")
    def _class_count(self) -> ModelCard:
        n = self.architecture.get("classes", 1)
        if n != len(self.classes):
            raise ValueError(f"architecture.classes is {n} but {len(self.classes)} classes are listed")
        return self


@dataclass
class Bundle:
    """A loaded bundle: its card, the ready network and where it lives."""

    card: ModelCard
    net: SegmentationNet
    path: Path

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.card.classes]


def _format_validation(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def read_card(path: Path) -> ModelCard:
    """Read and validate ``model.json``, naming the bad field on failure."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise BundleError(f"{path} not found") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    try:
        return ModelCard.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{path}: {_format_validation(exc)}") from exc


def build_network(card: ModelCard) -> SegmentationNet:
    """Build the untrained smp model of a card with its dropout sites."""
    args = {k: v for k, v in card.architecture.items() if k != "encoder_weights"}
    try:
        net = smp.create_model(**args, encoder_weights=None)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"architecture: smp.create_model rejected {args}: {exc}") from exc
    d = card.dropout
    try:
        return SegmentationNet(net, d.sites, d.rate, d.mode)
    except ValueError as exc:
        raise BundleError(f"dropout.sites: {exc}") from exc


def resolve_bundle_dir(name_or_dir: str | Path) -> Path:
    """A bundle folder from a path or from a name under ``models/``."""
    path = Path(name_or_dir)
    if (path / CARD_FILE).exists():
        return path
    named = models_dir() / str(name_or_dir)
    if (named / CARD_FILE).exists():
        return named
    raise BundleError(f"no model bundle at {name_or_dir!s} (looked for {path / CARD_FILE} and {named / CARD_FILE})")


def load_bundle(name_or_dir: str | Path = "default", device: str | torch.device = "cpu") -> Bundle:
    """Load a bundle strictly and put it in eval mode on ``device``.

    Raises:
        BundleError: with the file and field at fault.
    """
    path = resolve_bundle_dir(name_or_dir)
    card = read_card(path / CARD_FILE)
    net = build_network(card)
    weights = path / WEIGHTS_FILE
    if not weights.exists():
        raise BundleError(f"{weights} not found")
    try:
        raw_state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"{weights} is not a readable safetensors file: {exc}") from exc
    state = {k: v.float() if v.is_floating_point() else v for k, v in raw_state.items()}
    try:
        net.model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"{weights} does not match the architecture in {CARD_FILE}: {exc}") from exc
    net.eval().to(device)
    return Bundle(card, net, path)


def save_bundle(card: ModelCard, model: torch.nn.Module, out_dir: Path, half: bool = True) -> Path:
    """Write ``card`` and ``model``'s state dict (fp16 when ``half``) as a bundle."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {}
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        state[key] = tensor.half() if half and tensor.is_floating_point() else tensor
    save_file(state, str(out_dir / WEIGHTS_FILE))
    write_card(card, out_dir)
    return out_dir


def write_card(card: ModelCard, out_dir: Path) -> None:
    """Write ``model.json`` (pretty, stable key order)."""
    (out_dir / CARD_FILE).write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
