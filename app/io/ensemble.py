"""Ensemble bundles: a card of ``kind: "ensemble"`` that names member bundles, loaded as one
:class:`~app.engine.ensemble.EnsembleNet`.

``model.json`` of an ensemble folder::

    {"format_version": 1, "kind": "ensemble", "name": "ensemble", "members": ["../default", "member1", "member2"],
     "domain": "...", "temperature": 1.0, "provenance": {...}}

Members are folders relative to the ensemble's (any bundle or smp folder :func:`~app.io.bundle.load_bundle`
reads, but not ensembles). They must agree on the classes (names, in order) and the input normalisation, since
every member sees the same normalised image; the ensemble analyses at member 0's working size and shows member
0's class colours and dropout settings. The loaded bundle's card is member 0's, renamed and with the ensemble's
own domain, temperature, image reference and provenance (its members under ``provenance["members"]``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.engine.ensemble import EnsembleNet
from app.io.card import CARD_FILE, BundleError, ImageReference, ModelCard, read_json

__all__ = ["ENSEMBLE_KIND", "EnsembleCard", "combined_card", "ensemble_card_at", "load_ensemble"]

ENSEMBLE_KIND = "ensemble"


class EnsembleCard(BaseModel):
    """The contents of an ensemble's ``model.json``."""

    model_config = ConfigDict(extra="forbid")
    format_version: int = Field(1, ge=1, le=1)
    kind: Literal["ensemble"]
    name: str = Field(min_length=1)
    members: list[str] = Field(min_length=2, description="Member folders, relative to the ensemble's folder.")
    domain: str = Field("", description="Plain-language description of the data the members were trained on.")
    temperature: float = Field(1.0, gt=0.0, description="Calibration temperature of the pooled softmaxes; 1.0 until calibrated.")
    default_samples: int | None = Field(None, ge=0, le=4096, description="MC samples per member an analysis uses when it does not say.")
    image_reference: ImageReference | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)


def ensemble_card_at(folder: Path) -> EnsembleCard | None:
    """The ensemble card of ``folder``, or ``None`` when its ``model.json`` is absent or not of kind ``ensemble``.

    Raises:
        BundleError: a card of kind ``ensemble`` that does not validate, naming the field.
    """
    path = folder / CARD_FILE
    if not path.is_file():
        return None
    raw = read_json(path)
    if not isinstance(raw, dict) or raw.get("kind") != ENSEMBLE_KIND:
        return None
    try:
        return EnsembleCard.model_validate(raw)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())
        raise BundleError(f"{path}: {where}") from exc


def combined_card(card: EnsembleCard, members: list[ModelCard], where: Path) -> ModelCard:
    """Member 0's card as the ensemble's: renamed, with the ensemble's domain, temperature, reference and provenance.

    Raises:
        BundleError: the members disagree on the classes or the normalisation.
    """
    first = members[0]
    names = [c.name for c in first.classes]
    for path, member in zip(card.members[1:], members[1:], strict=True):
        other = [c.name for c in member.classes]
        if other != names:
            raise BundleError(
                f"{where}: member {path!r} has classes {other}, member {card.members[0]!r} has {names}; an ensemble's members need the same classes"
            )
        if member.normalization != first.normalization:
            raise BundleError(
                f"{where}: member {path!r} normalises with {member.normalization.model_dump()}, member {card.members[0]!r} with "
                f"{first.normalization.model_dump()}; an ensemble's members need the same normalisation"
            )
    listed = [{"path": p, "name": m.name, "test_miou": _miou(m)} for p, m in zip(card.members, members, strict=True)]
    return first.model_copy(
        update={
            "name": card.name,
            "domain": card.domain or first.domain,
            "temperature": card.temperature,
            "default_samples": card.default_samples,
            "calibration": None,
            "image_reference": card.image_reference,
            # Member 0's image test describes its own maps, not the pooled members': an ensemble is not checked without its own.
            "image_test": None,
            "provenance": {**card.provenance, "kind": ENSEMBLE_KIND, "members": listed},
        },
        deep=True,
    )


def _miou(card: ModelCard) -> float | None:
    metrics = card.provenance.get("metrics")
    test = metrics.get("test") if isinstance(metrics, dict) else None
    value = test.get("miou") if isinstance(test, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def load_ensemble(
    folder: Path, card: EnsembleCard, load_member: Callable[[Path, torch.device | str], tuple[ModelCard, Any]], device: torch.device | str
) -> tuple[ModelCard, EnsembleNet]:
    """Load every member with ``load_member(path, device) → (card, net)`` and check they fit together.

    Raises:
        BundleError: a member is missing, malformed, an ensemble itself, or does not match member 0.
    """
    cards: list[ModelCard] = []
    nets = []
    for relative in card.members:
        path = (folder / relative).resolve()
        if ensemble_card_at(path) is not None:
            raise BundleError(f"{folder / CARD_FILE}: member {relative!r} is an ensemble; members must be single models")
        try:
            member_card, net = load_member(path, device)
        except BundleError as exc:
            raise BundleError(f"{folder / CARD_FILE}: member {relative!r}: {exc}") from exc
        cards.append(member_card)
        nets.append(net)
    combined = combined_card(card, cards, folder / CARD_FILE)
    return combined, EnsembleNet(nets).eval().to(device)
