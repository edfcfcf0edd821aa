"""Sampling-free MC statistics of a factorised dropout head: a few channels enumerated, the others propagated.

As in :mod:`app.maps.rao_blackwell`, a pixel's logits are ``z = b + Σ_k m_k a_k`` (channel dropout, keep probability
``q``, inverted scaling) and the ``k`` channels whose drop moves the softmax most are summed over exactly (their
``2^k`` keep patterns ``s`` with probabilities ``π_s``). The other channels are not sampled: their logits have mean
``r̄ = Σ a_k`` and covariance ``Σ = σ² Σ_k a_k a_kᵀ`` (``σ² = (1 - q) / q``, exact for independent Bernoulli masks), and
each statistic ``f ∈ {p_c, p_c², H(p)}`` of the branch softmax is taken to second order around ``z_s = r̄ + o_s``::

    E f ≈ f(z_s) + ½ tr(∇²f(z_s) Σ)

With ``A_c = (e_c - p)ᵀ Σ (e_c - p)`` and ``B = Σ_c p_c Σ_cc - pᵀ Σ p`` (``p`` the branch softmax), the softmax's
directional second derivatives give ``½ tr(∇²p_c Σ) = ½ p_c (A_c - B)``, ``½ tr(∇²p_c² Σ) = p_c² (2 A_c - B)`` and
``½ tr(∇²H Σ) = -½ Σ_c p_c (A_c - B) log p_c - ½ B``. Where the propagated channels move the logits by several nats
the expansion can leave the valid range, so ``E p`` is clamped at 0 and renormalised, ``E p²`` kept in ``[0, E p]``
and ``E H`` in ``[0, log C]``. No noise, no samples; the truncation is a bias, measured against exact enumeration in
``docs/results.md``. Pure tensor code; no model here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from app.maps.rao_blackwell import enumeration, select_channels

__all__ = ["propagate", "propagated_moments"]


def propagated_moments(
    parts: torch.Tensor, bias: torch.Tensor, k: int, keep: float, temperature: float = 1.0, kernel: Kernel | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``E p``, ``E p²`` and ``E H(p)`` of a block of pixels, ``k`` channels exact, the rest to second order.

    Args:
        parts: ``(B, K, C, n)`` per-channel head outputs ``a_k``.
        bias: ``(C,)`` head bias (zeros without one).
        k: Channels enumerated exactly per pixel (``0 <= k <= K``; ``k = K`` is exact).
        keep: ``q``.
        temperature: ``τ`` in ``softmax(z / τ)``.
        kernel: :func:`propagate` or a compiled version of it.

    Returns:
        The deterministic softmax ``(B, C, n)``, ``E p`` and ``E p²`` ``(B, C, n)``, ``E H(p)`` ``(B, n)``.
    """
    chosen = select_channels(parts, k, bias, temperature)
    patterns, weights = enumeration(k, keep, parts.device, parts.dtype)
    tau = torch.tensor(temperature, device=parts.device, dtype=parts.dtype)
    sigma2 = torch.tensor((1.0 - keep) / keep, device=parts.device, dtype=parts.dtype)
    return (kernel or propagate)(parts, chosen, bias, patterns, weights, sigma2, tau)


Kernel = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


def propagate(
    parts: torch.Tensor, chosen: torch.Tensor, bias: torch.Tensor, patterns: torch.Tensor, weights: torch.Tensor, sigma2: torch.Tensor, tau: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernel of :func:`propagated_moments` once the channels are chosen: ``chosen`` ``(B, k, n)``, 0-d ``σ²`` and ``τ``."""
    b, kk, c, n = parts.shape
    k = chosen.shape[1]
    selected = torch.zeros(b, kk, n, device=parts.device, dtype=parts.dtype).scatter(1, chosen, 1.0)
    rest = parts * (1.0 - selected).unsqueeze(2) / tau
    cov = torch.zeros(b, c, c, n, device=parts.device, dtype=parts.dtype)
    for channel in range(kk):
        cov = cov + rest[:, channel].unsqueeze(2) * rest[:, channel].unsqueeze(1)
    cov = cov * sigma2
    picked = parts.gather(1, chosen.unsqueeze(2).expand(b, k, c, n)) / tau
    offsets = torch.matmul(patterns, picked.reshape(b, k, c * n)).view(b, patterns.shape[0], c, n)
    z = (rest.sum(1) + bias.view(1, c, 1) / tau).unsqueeze(1) + offsets
    log_p = torch.log_softmax(z, dim=2)
    p = log_p.exp()
    cov_p = (cov.unsqueeze(1) * p.unsqueeze(2)).sum(3)
    p_cov_p = (p * cov_p).sum(2, keepdim=True)
    diag = torch.diagonal(cov, dim1=1, dim2=2).permute(0, 2, 1).unsqueeze(1)
    a = diag - 2.0 * cov_p + p_cov_p
    b_term = (p * diag).sum(2, keepdim=True) - p_cov_p
    mean = p + 0.5 * p * (a - b_term)
    second = p.square() * (1.0 + 2.0 * a - b_term)
    entropy = -(p * log_p).sum(2) - 0.5 * (p * (a - b_term) * log_p).sum(2) - 0.5 * b_term.squeeze(2)
    w = weights.view(1, -1, 1, 1)
    deterministic = torch.softmax((parts.sum(1) + bias.view(1, c, 1)) / tau, dim=1)
    mean_p = (w * mean).sum(1).clamp(min=0.0)
    mean_p = mean_p / mean_p.sum(1, keepdim=True)
    second_p = torch.minimum((w * second).sum(1).clamp(min=0.0), mean_p)
    expected = (weights.view(1, -1, 1) * entropy).sum(1).clamp(0.0, math.log(c))
    return deterministic, mean_p, second_p, expected
