"""An analysed image → :class:`~app.engine.analysis.AdversarialMaps`: the attack of :mod:`app.engine.adversarial` on a
bundle's deterministic pass, its host arrays, and its 8-bit perturbed images with their own predictions."""

from __future__ import annotations

import time

import numpy as np
import torch

from app.defaults import ADVERSARIAL_MAX_PIXELS, ADVERSARIAL_PASS_UNITS
from app.engine.adversarial import AttackSettings, attack
from app.engine.analysis import AdversarialMaps
from app.engine.attack_target import pixel_log_probs
from app.engine.cancel import CancelToken, checkpoint
from app.io.bundle import Bundle
from app.request import AnalysisRequest

__all__ = ["AttackTooLarge", "adversarial_maps", "adversarial_units", "check_attack_size"]


class AttackTooLarge(ValueError):
    """The image is too large for the attack (it runs whole, with backward passes)."""


def check_attack_size(height: int, width: int, max_pixels: int = ADVERSARIAL_MAX_PIXELS) -> None:
    """Refuse an attack on an analysed ``height × width`` image over ``max_pixels``.

    Raises:
        AttackTooLarge: the message says what to send instead.
    """
    if height * width > max_pixels:
        raise AttackTooLarge(
            f"the adversarial attack runs on the whole image with backward passes: {width}x{height} analysed pixels is more than its "
            f"limit of {max_pixels:,}; analyse at resolution=working or send a smaller image"
        )


def adversarial_units(pixels: int, request: AnalysisRequest) -> int:
    """The attack's work units: analysed pixels × deterministic-pass equivalents (a forward-and-backward pass counts
    :data:`~app.defaults.ADVERSARIAL_PASS_UNITS`); 0 when the request asks for none."""
    if not request.adversarial:
        return 0
    radii = len(request.adversarial)
    return pixels * (radii * ((request.adversarial_steps + 1) * ADVERSARIAL_PASS_UNITS + 2) + 1)


def adversarial_maps(bundle: Bundle, rgb: np.ndarray, request: AnalysisRequest, device: torch.device, *, cancel: CancelToken | None = None) -> AdversarialMaps:
    """Attack ``rgb`` (at its analysed size) as ``request`` asks (radii, steps; its seed seeds the random start).

    Args:
        bundle: The model (its network in eval mode on ``device``).
        rgb: ``(H, W, 3)`` uint8 analysed image.
        request: ``adversarial`` (non-empty), ``adversarial_steps`` and ``seed``.
        device: Where the network is.
        cancel: Checked before the attack and before the rounded images' passes.

    Raises:
        AttackTooLarge: the image is over :data:`~app.defaults.ADVERSARIAL_MAX_PIXELS`.
        ValueError: the request asks for no radius.
    """
    height, width = int(rgb.shape[0]), int(rgb.shape[1])
    check_attack_size(height, width)
    settings = AttackSettings(request.adversarial, steps=request.adversarial_steps, seed=request.seed)
    norm = bundle.card.normalization
    log_probs = pixel_log_probs(bundle.net, norm.mean, norm.std)
    checkpoint(cancel)
    start = time.perf_counter()
    image = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0).to(device)
    result = attack(log_probs, image, settings)
    checkpoint(cancel)
    rounded = result.perturbed[:, 0].round().clamp(0, 255)
    with torch.no_grad():
        predictions = torch.cat([log_probs(r.unsqueeze(0)).argmax(1) for r in rounded])
    clean = result.clean[0]
    seconds = time.perf_counter() - start
    return AdversarialMaps(
        epsilons=result.epsilons,
        steps=settings.steps,
        seed=settings.seed,
        clean=clean.cpu().numpy(),
        flip_epsilon=np.ascontiguousarray(result.flip_epsilon[0].cpu().numpy(), dtype=np.float32),
        flip_share=[float(v) for v in result.flip_share[:, 0]],
        flippable_share=[float(v) for v in result.flippable_share[:, 0]],
        perturbed=np.ascontiguousarray(rounded.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()),
        predictions=predictions.cpu().numpy(),
        rounded_flip_share=[float((p != clean).float().mean()) for p in predictions],
        seconds=seconds,
        passes=settings.passes + len(settings.epsilons),
    )
