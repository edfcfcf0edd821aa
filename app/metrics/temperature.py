"""Temperature scaling: one ``τ`` for ``softmax(z / τ)`` that minimises the NLL.

The fit works on log-probabilities: ``softmax(log p / τ) = softmax(z / τ)``
because softmax ignores a per-pixel shift, so the deterministic softmax of an
analysis is all it needs. ``log τ`` is found by SciPy's bounded scalar
minimiser (Brent's method with golden-section steps). Dividing logits by a positive ``τ`` never changes their argmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from scipy.optimize import minimize_scalar

LOG_TAU_BOUNDS = (math.log(0.05), math.log(20.0))
FIT_METHOD = "temperature scaling: SciPy bounded minimisation of the pixel NLL over log(tau) in [0.05, 20]"


def log_probs_of(probs: torch.Tensor) -> torch.Tensor:
    """``log p`` with zeros clamped to ``1e-30``: usable as logits, since softmax ignores a per-pixel shift."""
    return torch.log(probs.float().clamp(min=1e-30))


def rescale(probs: torch.Tensor, factor: float, dim: int) -> torch.Tensor:
    """``softmax(factor · log p)``: probabilities at ``τ/factor`` from probabilities at ``τ`` (``factor = 1/τ`` applies ``τ``)."""
    return torch.softmax(log_probs_of(probs) * factor, dim=dim)


def nll_at(log_probs: torch.Tensor, labels: torch.Tensor, temperature: float, chunk: int = 1_000_000) -> float:
    """Mean NLL of ``softmax(log_probs / τ)`` at the labels.

    Args:
        log_probs: ``(N, C)`` log-probabilities (or logits).
        labels: ``(N,)`` class indices.
        temperature: ``τ > 0``.
    """
    total = 0.0
    for start in range(0, log_probs.shape[0], chunk):
        z = log_probs[start : start + chunk].float() / temperature
        y = labels[start : start + chunk].long()
        total += float(-(torch.log_softmax(z, dim=1).gather(1, y[:, None])).double().sum())
    return total / max(log_probs.shape[0], 1)


def fit_temperature(log_probs: torch.Tensor, labels: torch.Tensor, tol: float = 1e-5) -> float:
    """The ``τ`` in ``[0.05, 20]`` that minimises :func:`nll_at` (SciPy's bounded scalar search on ``log τ``).

    Raises:
        ValueError: no labelled pixels.
    """
    if log_probs.shape[0] == 0:
        raise ValueError("no labelled pixels to fit a temperature on")
    found = minimize_scalar(lambda log_tau: nll_at(log_probs, labels, math.exp(log_tau)), bounds=LOG_TAU_BOUNDS, method="bounded", options={"xatol": tol})
    return math.exp(float(found.x))


@dataclass
class LogitPool:
    """Collect labelled log-probabilities for a fit.

    Args:
        rate: Keep each pixel with this probability (seeded); ``1.0`` keeps all.
            Callers set it to ``min(1, TEMPERATURE_FIT_MAX_PIXELS / total labelled pixels)``.
        seed: Seed of the subsample.
    """

    rate: float = 1.0
    seed: int = 0
    parts: list[torch.Tensor] = field(default_factory=list)
    labels: list[torch.Tensor] = field(default_factory=list)
    seen: int = 0

    def add(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Add ``(N, C)`` probabilities and ``(N,)`` labels of one image."""
        if self.rate < 1.0:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.seen)
            keep = torch.rand(probs.shape[0], generator=gen) < self.rate
            probs, labels = probs[keep], labels[keep]
        self.seen += int(keep.numel()) if self.rate < 1.0 else probs.shape[0]
        self.parts.append(log_probs_of(probs))
        self.labels.append(labels.long())

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All kept ``(N, C)`` log-probabilities and ``(N,)`` labels."""
        if not self.parts:
            raise ValueError("no labelled pixels collected")
        return torch.cat(self.parts), torch.cat(self.labels)
