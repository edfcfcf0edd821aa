"""torchvision's segmentation family in a card: ``architecture.arch = "torchvision.models.segmentation.<builder>"``.

The model is built with ``weights=None, weights_backbone=None`` (nothing is downloaded) and ``num_classes`` from
``architecture.classes``; other keys go to the builder (``aux_loss`` …), download keys are ignored. Without a
``dropout`` section the card gets the model's own trained dropout (DeepLabV3: ``nn.Dropout(0.5)`` at the end of the
ASPP projection; FCN: ``nn.Dropout(0.1)`` in its head). LR-ASPP has none: it gets channel dropout at inference on the
output of its ``classifier.cbr`` branch (``trained_with_dropout: false``), unless the card names other sites.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from app.io.card import BundleError, DropoutConfig, architecture_classes
from app.io.smp_format import DOWNLOAD_KEYS

__all__ = ["TORCHVISION_PREFIX", "build_torchvision", "default_dropout", "is_torchvision", "strip_aux"]

TORCHVISION_PREFIX = "torchvision.models.segmentation."
_DEEPLAB = DropoutConfig(sites=["classifier.0.project.3"], rate=0.5, mode="element", trained_with_dropout=True)
_FCN = DropoutConfig(sites=["classifier.3"], rate=0.1, mode="element", trained_with_dropout=True)
_LRASPP = DropoutConfig(sites=["classifier.cbr"], rate=0.2, mode="channel", trained_with_dropout=False)
# builder → (output stride inputs are padded to, dropout when the card has none)
BUILDERS: dict[str, tuple[int, DropoutConfig]] = {
    "deeplabv3_mobilenet_v3_large": (16, _DEEPLAB),
    "deeplabv3_resnet50": (8, _DEEPLAB),
    "deeplabv3_resnet101": (8, _DEEPLAB),
    "fcn_resnet50": (8, _FCN),
    "fcn_resnet101": (8, _FCN),
    "lraspp_mobilenet_v3_large": (16, _LRASPP),
}


def is_torchvision(architecture: dict[str, Any]) -> bool:
    """Whether a card's architecture names a torchvision builder."""
    return str(architecture.get("arch", "")).startswith(TORCHVISION_PREFIX)


def _builder(architecture: dict[str, Any]) -> str:
    name = str(architecture["arch"]).removeprefix(TORCHVISION_PREFIX)
    if name not in BUILDERS:
        known = ", ".join(TORCHVISION_PREFIX + b for b in BUILDERS)
        raise BundleError(f"architecture.arch: {architecture['arch']!r} is not a supported torchvision builder ({known})")
    return name


def default_dropout(architecture: dict[str, Any]) -> DropoutConfig:
    """The dropout a card without a ``dropout`` section gets for this builder."""
    return BUILDERS[_builder(architecture)][1].model_copy(deep=True)


def build_torchvision(architecture: dict[str, Any]) -> tuple[nn.Module, int]:
    """The untrained model and its output stride.

    Raises:
        BundleError: an unsupported builder, or arguments the builder rejects.
    """
    from torchvision.models import segmentation

    name = _builder(architecture)
    kwargs = {k: v for k, v in architecture.items() if k not in ("arch", "classes", "num_classes", *DOWNLOAD_KEYS)}
    try:
        model = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=architecture_classes(architecture), **kwargs)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"architecture: torchvision {name} rejected {kwargs}: {exc}") from exc
    return model, BUILDERS[name][0]


def strip_aux(state: dict[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], int]:
    """Drop the training-only auxiliary classifier's weights when ``model`` has none; returns the state and how many went."""
    if getattr(model, "aux_classifier", None) is not None:
        return state, 0
    kept = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    return kept, len(state) - len(kept)
