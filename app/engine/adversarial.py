"""Untargeted L∞ attacks on a segmentation network's own prediction, and the flip-ε map.

Pure tensor functions: the network is a callable from ``(B, 3, H, W)`` pixel values in ``[0, 255]`` to ``(B, C, H, W)``
log-probabilities (:func:`app.engine.attack_target.pixel_log_probs` builds one from a
:class:`~app.engine.network.SegmentationNet`). Gradients are taken with :func:`torch.autograd.grad` with respect to the
input only, so no parameter gains a ``.grad`` and the model is never changed.

For each ε of an ascending list (pixel levels: ε = 2 is 2/255 of the range) the attack maximises the summed
cross-entropy of the prediction against the clean prediction ``ŷ``:

1. start: the first ε from a seeded uniform point of its ball (random start); every later ε from the perturbation kept
   at the previous ε (a warm start: a smaller ball lies inside a larger one);
2. one FGSM step of size ε, then ``steps`` PGD steps of size ``step_fraction · ε`` along the gradient's sign, each
   projected onto the ball ``‖δ‖∞ ≤ ε`` and the box ``0 ≤ x + δ ≤ 255``;
3. every iterate's prediction is compared with ``ŷ``; the iterate that flips the most pixels of an image is kept.

What is monotone, by construction:

* the **flip-ε map** ``(B, H, W)``: the smallest ε of the list at which *some* iterate flipped the pixel (``inf`` where
  none did). Each iterate lies inside its ε's ball, so a value ε means the attack found a perturbation of size at most
  ε that flips the pixel; its share at or below ε (``flippable_share``) cannot fall as ε grows.
* **flip_share**: the share of pixels the one kept perturbed image flips. The warm start makes the previous ε's kept
  image an iterate of the next, so it cannot fall either.

Not guaranteed: that the kept image at a larger ε flips every pixel a smaller one did (they are different
perturbations); ``flip_share ≤ flippable_share`` is what holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AttackResult", "AttackSettings", "LogProbs", "attack", "epsilon_labels", "loss_and_gradient", "project"]

LogProbs = Callable[[torch.Tensor], torch.Tensor]
PIXEL_MAX = 255.0


@dataclass(frozen=True)
class AttackSettings:
    """How to attack.

    Attributes:
        epsilons: L∞ radii in pixel levels of ``[0, 255]``, strictly ascending and positive.
        steps: PGD steps after the FGSM step (0: FGSM only).
        step_fraction: PGD step size as a fraction of ε (``None``: ``2.5 / steps``, Madry et al.'s choice).
        seed: Seeds the random start.
        random_start: Start the first ε from a uniform point of its ball (else from the clean image).
    """

    epsilons: tuple[float, ...]
    steps: int = 3
    step_fraction: float | None = None
    seed: int = 0
    random_start: bool = True

    def __post_init__(self) -> None:
        if not self.epsilons:
            raise ValueError("epsilons must list at least one radius")
        if any(e <= 0 or e > PIXEL_MAX for e in self.epsilons):
            raise ValueError(f"every epsilon must be in (0, 255] pixel levels, got {list(self.epsilons)}")
        if any(b <= a for a, b in zip(self.epsilons, self.epsilons[1:], strict=False)):
            raise ValueError(f"epsilons must be strictly ascending, got {list(self.epsilons)}; sort them and drop repeats")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")

    @property
    def passes(self) -> int:
        """Forward passes of the attack per ε (each of the first ``steps + 1`` with a backward pass) and one for the clean image."""
        return len(self.epsilons) * (self.steps + 2) + 1

    def alpha(self, epsilon: float) -> float:
        """The PGD step size at ``epsilon``."""
        fraction = self.step_fraction if self.step_fraction is not None else 2.5 / max(self.steps, 1)
        return fraction * epsilon


@dataclass(frozen=True)
class AttackResult:
    """What the attack found, for ``E`` radii and ``B`` images.

    Attributes:
        epsilons: The radii, pixel levels.
        clean: ``(B, H, W)`` int64 prediction of the clean image.
        flip_epsilon: ``(B, H, W)`` float32: the smallest ε at which some iterate flipped the pixel; ``inf`` where none did.
        flip_share: ``(E, B)`` share of pixels the kept perturbed image flips at each ε.
        flippable_share: ``(E, B)`` share of pixels with ``flip_epsilon ≤ ε``.
        perturbed: ``(E, B, 3, H, W)`` float32 kept perturbed images in ``[0, 255]``.
        predictions: ``(E, B, H, W)`` int64 predictions of the kept perturbed images.
    """

    epsilons: tuple[float, ...]
    clean: torch.Tensor
    flip_epsilon: torch.Tensor
    flip_share: torch.Tensor
    flippable_share: torch.Tensor
    perturbed: torch.Tensor
    predictions: torch.Tensor


def loss_and_gradient(log_probs: LogProbs, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The summed cross-entropy of ``target`` and its gradient with respect to the input only.

    Args:
        log_probs: ``(B, 3, H, W)`` → ``(B, C, H, W)`` log-probabilities.
        image: ``(B, 3, H, W)`` pixel values.
        target: ``(B, H, W)`` int64 labels.

    Returns:
        The loss (a scalar), its ``(B, 3, H, W)`` gradient with respect to ``image`` and the ``(B, C, H, W)`` log-probabilities
        (detached).
    """
    with torch.enable_grad():
        x = image.detach().requires_grad_(True)
        out = log_probs(x)
        loss = F.nll_loss(out, target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad, out.detach()


def project(delta: torch.Tensor, image: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``delta`` clipped to the ball ``‖δ‖∞ ≤ epsilon`` and so that ``image + δ`` stays in ``[0, 255]``."""
    return (image + delta.clamp(-epsilon, epsilon)).clamp(0.0, PIXEL_MAX) - image


class _Tracker:
    """The flip-ε map and, per image, the iterate that flips the most pixels at the current ε."""

    def __init__(self, clean: torch.Tensor) -> None:
        self.clean = clean
        self.flip_epsilon = torch.full(clean.shape, float("inf"), device=clean.device)
        self.reset()

    def reset(self) -> None:
        self.best_count = torch.full((self.clean.shape[0],), -1, dtype=torch.long, device=self.clean.device)
        self.best_delta: torch.Tensor | None = None
        self.best_pred = torch.empty_like(self.clean)

    def see(self, delta: torch.Tensor, out: torch.Tensor, epsilon: float) -> None:
        pred = out.argmax(1)
        flipped = pred != self.clean
        self.flip_epsilon[flipped & torch.isinf(self.flip_epsilon)] = epsilon
        count = flipped.flatten(1).sum(1)
        better = count > self.best_count
        if self.best_delta is None:
            self.best_delta = delta.clone()
        self.best_delta[better] = delta[better]
        self.best_pred[better] = pred[better]
        self.best_count = torch.where(better, count, self.best_count)


def attack(log_probs: LogProbs, image: torch.Tensor, settings: AttackSettings) -> AttackResult:
    """Attack ``image`` at every ε of ``settings`` (see the module's description).

    Args:
        log_probs: ``(B, 3, H, W)`` pixel values in ``[0, 255]`` → ``(B, C, H, W)`` log-probabilities; deterministic (eval mode,
            no dropout), differentiable in its input.
        image: ``(B, 3, H, W)`` float pixel values in ``[0, 255]``.
        settings: Radii, steps, step size and seed.

    Returns:
        The flip-ε map, per-ε shares and the kept perturbed images with their predictions.
    """
    image = image.detach()
    with torch.no_grad():
        clean = log_probs(image).argmax(1)
    tracker = _Tracker(clean)
    generator = torch.Generator(device=image.device).manual_seed(settings.seed)
    pixels = clean[0].numel()
    delta = torch.zeros_like(image)
    if settings.random_start:
        noise = torch.rand(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        delta = (2 * noise - 1) * settings.epsilons[0]
    shares, perturbed, predictions = [], [], []
    for epsilon in settings.epsilons:
        delta = project(delta, image, epsilon)
        tracker.reset()
        for step in range(settings.steps + 1):
            _, grad, out = loss_and_gradient(log_probs, image + delta, clean)
            tracker.see(delta, out, epsilon)
            size = epsilon if step == 0 else settings.alpha(epsilon)
            delta = project(delta + size * grad.sign(), image, epsilon)
        with torch.no_grad():
            tracker.see(delta, log_probs(image + delta), epsilon)
        assert tracker.best_delta is not None
        delta = tracker.best_delta
        shares.append(tracker.best_count.to(torch.float32) / pixels)
        perturbed.append(image + delta)
        predictions.append(tracker.best_pred.clone())
    flip = tracker.flip_epsilon
    flippable = torch.stack([(flip <= e).flatten(1).float().mean(1) for e in settings.epsilons])
    return AttackResult(
        epsilons=tuple(float(e) for e in settings.epsilons),
        clean=clean,
        flip_epsilon=flip,
        flip_share=torch.stack(shares),
        flippable_share=flippable,
        perturbed=torch.stack(perturbed).to(torch.float32),
        predictions=torch.stack(predictions),
    )


def epsilon_labels(epsilons: Sequence[float]) -> list[str]:
    """Each radius as a fraction of the range, e.g. ``"2/255"``."""
    return [f"{e:g}/255" for e in epsilons]
