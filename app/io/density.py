"""A bundle's fitted feature density on disk: a small safetensors file beside the weights, named in the card.

Tensors (all read strictly, never unpickled): ``means`` ``(G, K)``, ``classes`` ``(G,)``, ``whitening`` ``(K, K)``,
``quantiles`` and ``levels`` ``(Q,)`` (:class:`~app.maps.density.FeatureDensity`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from app.io.card import BundleError, ModelCard, read_safetensors
from app.maps.density import FeatureDensity

__all__ = ["DENSITY_FILE", "read_density", "write_density"]

DENSITY_FILE = "density.safetensors"
_FLOAT_KEYS = ("means", "whitening", "quantiles", "levels")


def write_density(density: FeatureDensity, path: Path) -> None:
    """Write ``density`` (float64, contiguous) to ``path``, readable by everyone like the weights."""
    tensors = {key: getattr(density, key).detach().cpu().double().contiguous() for key in _FLOAT_KEYS}
    tensors["classes"] = density.classes.detach().cpu().long().contiguous()
    save_file(tensors, str(path), metadata={"format": "seg-uncertainty feature density", "version": "1"})
    path.chmod(0o644)  # safetensors writes 0600; a bundle is read by other users too (a container's non-root server)


def read_density(folder: Path, card: ModelCard) -> FeatureDensity | None:
    """The density the card names, or ``None`` when it names none.

    Raises:
        BundleError: the file is missing, unreadable, or does not match the card (channels, classes).
    """
    info = card.feature_density
    if info is None:
        return None
    path = folder / info.file
    if not path.exists():
        raise BundleError(f"{path} not found: the card's feature_density names it (refit with seg-uncertainty fit-density, or remove feature_density)")
    raw = read_safetensors(path)
    missing = [key for key in (*_FLOAT_KEYS, "classes") if key not in raw]
    if missing:
        raise BundleError(f"{path} lacks {', '.join(missing)}")
    try:
        density = FeatureDensity(
            means=raw["means"].double(),
            classes=raw["classes"].long(),
            whitening=raw["whitening"].double(),
            quantiles=raw["quantiles"].double(),
            levels=raw["levels"].double(),
        )
    except (ValueError, RuntimeError) as exc:
        raise BundleError(f"{path}: {exc}") from exc
    if density.channels != info.channels:
        raise BundleError(f"{path} has {density.channels} feature channels, the card's feature_density.channels says {info.channels}")
    classes = density.classes.tolist()
    if any(c < 0 or c >= len(card.classes) for c in classes) or [card.classes[c].name for c in classes] != info.classes:
        raise BundleError(f"{path}: its classes {classes} do not match feature_density.classes {info.classes} of the card")
    if not bool(torch.isfinite(density.means).all() and torch.isfinite(density.whitening).all() and torch.isfinite(density.quantiles).all()):
        raise BundleError(f"{path} holds non-finite values")
    return density
