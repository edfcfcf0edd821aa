"""Rao–Blackwellised draws carried relative to class 0: the kernels of :mod:`app.engine.rb_head`.

A softmax does not change when one class's logit is subtracted from all, and a linear head's per-channel outputs
``a_kc`` can be taken relative to class 0 (``a_kc - a_k0``, whose class 0 is always 0): ``C - 1`` values per channel
and pixel instead of ``C`` through the head convolution, the branch factors and every draw's logits. Class 0's zeros
are put back (:func:`with_reference_class`) only where the softmax needs every class.

The draws' softmax moments are computed factorised: with the draw's logits and the branches' offsets each shifted to
a class maximum of 0, ``exp(z_tc + o_sc) = exp(z_tc) · exp(o_sc)``, so ``T · C + S · C`` exponentials replace
``T · S · C`` (:func:`factorised_grouped_moments`). Every factor lies in ``(0, 1]`` and the normaliser of a draw and
branch is at least ``exp(-min(range_c z_t, range_c o_s))``: exact unless a pixel's logits span more than ~69 nats
both ways (a normaliser below :data:`SAFE_NORM`, where the largest product nears float32's smallest normal number),
which the kernel reports (its smallest normaliser) so that the caller can recompute that tile directly. The
probabilities are each product over its normaliser (no square of a normaliser, which would underflow from ~45 nats
on); the entropy ``log Σ - Σ p l`` carries an absolute rounding that grows with the logits' spread (against float64:
7e-7, 1.6e-6 and 7.8e-6 nats for logits of standard deviation 3, 10 and 20), far below the maps' Monte-Carlo error.
Pure tensor code; no model here.
"""

from __future__ import annotations

import torch

from app.maps.rao_blackwell import branch_factors, branch_moments, group_sums, grouped_moments, top_channels

__all__ = [
    "SAFE_NORM",
    "factorised_grouped_moments",
    "relative_branch_moments",
    "relative_grouped_moments",
    "relative_widest",
    "tile_branches",
    "with_reference_class",
]

SAFE_NORM = 1e-30


def relative_widest(parts: torch.Tensor, k: int) -> torch.Tensor:
    """Per pixel, the ``k`` channels whose head outputs span the most logits: ``parts`` ``(B, K, C-1, n)`` (``a_kc - a_k0``, ``c >= 1``) → ``(B, k, n)``.

    A channel's span ``max_c a_kc - min_c a_kc`` bounds how far dropping it moves any logit margin, and needs no
    softmax per channel; counted over all ``C`` classes, class 0's relative output (0) included. With draws
    independent per block of pixels (:mod:`app.engine.block_masks`) the choice changes the noise of a pixel, not of
    the image mean, and it gives the same bias as the softmax-effect choice of
    :func:`~app.maps.rao_blackwell.select_channels` (measured: ``docs/results.md``).
    """
    span = parts.amax(dim=2).clamp(min=0.0) - parts.amin(dim=2).clamp(max=0.0)
    return top_channels(span, k)


def tile_branches(
    parts: torch.Tensor, bias: torch.Tensor, patterns: torch.Tensor, temperature: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Everything a block's draws share, from its per-channel head outputs relative to class 0: one kernel for :mod:`app.engine.rb_head`.

    A softmax does not change when one class's logit is subtracted from all, so the head's outputs are carried
    relative to class 0 (``a_kc - a_k0``, whose class 0 is always 0): ``C - 1`` values per channel instead of ``C``.

    Args:
        parts: ``(B, K, C-1, n)`` per-channel head outputs of classes ``1..C-1`` less class 0's.
        bias: ``(C-1,)`` head bias of classes ``1..C-1`` less class 0's (zeros without one).
        patterns: ``(2^k, k)`` scaled keep patterns.
        temperature: 0-d ``τ``.
        k: Channels enumerated per pixel.

    Returns:
        The deterministic softmax ``(B, C, n)``; ``rest`` ``(B, K, (C-1)·n)`` (the chosen channels zeroed) and the
        branches' offsets ``(B, 2^k, C, n)`` (class 0 included, relative to their class maximum) of the
        :func:`relative_widest` choice.
    """
    relative = (parts.sum(dim=1) + bias.view(1, -1, 1)) / temperature
    probs = torch.softmax(with_reference_class(relative, 1), dim=1)
    rest, offsets = branch_factors(parts, relative_widest(parts, k), patterns, 1.0 / temperature, shift=False)
    offsets = with_reference_class(offsets, 2)
    return probs, rest, offsets - offsets.amax(dim=2, keepdim=True)


def with_reference_class(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` relative to class 0 with class 0's zeros put back in front along ``dim`` (``C - 1`` → ``C`` classes)."""
    return torch.cat([torch.zeros_like(x.narrow(dim, 0, 1)), x], dim=dim)


def relative_grouped_moments(z: torch.Tensor, log_s: torch.Tensor, weights: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`grouped_moments` of draws' logits relative to class 0 (``z`` ``(N, T, C-1, L)``; ``log_s`` all ``C`` classes)."""
    return grouped_moments(with_reference_class(z, 2), log_s, weights, groups)


def relative_branch_moments(z: torch.Tensor, log_s: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`branch_moments` of draws' logits relative to class 0 (``z`` ``(B, T, C-1, n)``; ``log_s`` all ``C`` classes)."""
    return branch_moments(with_reference_class(z, 2), log_s, weights)


def factorised_grouped_moments(
    raw: torch.Tensor, bias: torch.Tensor, temperature: torch.Tensor, log_s: torch.Tensor, weights: torch.Tensor, groups: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`relative_grouped_moments` with the exponentials factorised, and the smallest normaliser met.

    Args:
        raw: ``(N, T, C-1, L)`` the draws' masked sums ``Σ_k m_tk a_k`` over the non-enumerated channels, relative to
            class 0, before bias and temperature (``T`` a multiple of ``groups``).
        bias: ``(C-1,)`` the head bias relative to class 0.
        temperature: 0-d ``τ``.
        log_s: ``(N, S, C, L)`` the branches' offsets, each branch's class maximum 0 (:func:`tile_branches`).
        weights: ``(S,)`` the branches' probabilities.
        groups: ``G``.

    Returns:
        Group sums of ``P_t`` and ``Q_t`` ``(N, G, C, L)`` and of ``H_t`` ``(N, G, L)``, and the smallest
        ``Σ_c exp(z_tc + o_sc)`` (0-d): below :data:`SAFE_NORM` the sums may have lost precision.
    """
    full = with_reference_class((raw + bias.view(1, 1, -1, 1)) / temperature, 2)
    shifted = full - full.amax(dim=2, keepdim=True)
    e = shifted.exp().unsqueeze(2) * log_s.exp().unsqueeze(1)
    norm = e.sum(dim=3)
    safe = norm.clamp(min=SAFE_NORM * 1e-7)
    probs = e / safe.unsqueeze(3)
    logits = shifted.unsqueeze(2) + log_s.unsqueeze(1)
    entropy = safe.log() - (probs * logits).sum(dim=3)
    w = weights.view(1, 1, -1, 1, 1)
    p = (probs * w).sum(dim=2)
    q = (probs.square() * w).sum(dim=2)
    h = (entropy * w[..., 0]).sum(dim=2)
    return (*group_sums(p, q, h, groups), norm.amin())
