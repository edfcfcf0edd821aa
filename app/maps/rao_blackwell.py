"""Rao–Blackwellised MC statistics of a factorised dropout head: a few channels per pixel enumerated exactly.

With channel dropout (keep probability ``q``, inverted scaling) before a linear head, a sample's logits at a pixel
are ``z = b + Σ_k m_k a_k`` with ``m_k ∈ {0, 1/q}`` and ``a_k`` the channel's ``C`` head outputs there. At each pixel
the ``k`` channels whose dropping moves the deterministic softmax most (:func:`select_channels`) are summed over
exactly: every one of their ``2^k`` keep patterns ``s``, with its probability ``π_s = q^{|s|} (1-q)^{k-|s|}``; the
other channels keep the sample's mask. A draw ``t`` is therefore

    P_t = Σ_s π_s softmax(z_ts),   Q_t = Σ_s π_s softmax(z_ts)²,   H_t = Σ_s π_s H[softmax(z_ts)]

whose expectations over the sampled masks are exactly ``E p``, ``E p²`` and ``E H[p]``: the estimator is unbiased by
construction, and the variance the enumerated channels would add is gone. Pure tensor code; no model here.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import torch

__all__ = [
    "Branches",
    "Draws",
    "branch_factors",
    "branch_moments",
    "draw_logits",
    "draw_moments",
    "enumeration",
    "group_sums",
    "grouped_moments",
    "rao_blackwell_draws",
    "select_channels",
    "top_channels",
]


@lru_cache(maxsize=16)
def _patterns(k: int, keep: float) -> tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]:
    rows = list(itertools.product((0.0, 1.0), repeat=k))
    weights = tuple(float(keep ** sum(r) * (1.0 - keep) ** (k - sum(r))) for r in rows)
    return tuple(tuple(v / keep for v in r) for r in rows), weights


def enumeration(k: int, keep: float, device: torch.device, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``2^k`` scaled keep patterns ``(2^k, k)`` (entries 0 or ``1/q``) and their probabilities ``(2^k,)`` (summing to 1)."""
    if k < 0 or not 0.0 < keep <= 1.0:
        raise ValueError(f"need k >= 0 and 0 < keep <= 1, got k={k}, keep={keep}")
    rows, weights = _patterns(k, float(keep))
    return torch.tensor(rows, device=device, dtype=dtype).view(2**k, k), torch.tensor(weights, device=device, dtype=dtype)


def select_channels(parts: torch.Tensor, k: int, bias: torch.Tensor | None = None, temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Per pixel, the ``k`` channels whose dropping moves the softmax most: ``parts`` ``(B, K, C, n)`` → ``(B, k, n)`` indices.

    A channel's effect is the L1 distance between the deterministic softmax ``softmax(z̄ / τ)`` and the one with that
    channel dropped, ``softmax((z̄ - a_k) / τ)`` (``z̄ = b + Σ_k a_k``, the mean logits under inverted dropout). Unlike
    the channel's logit range, it ignores classes the pixel is far from and sees a drop that flips the class.

    Args:
        parts: Per-channel head outputs ``a_k``.
        k: Channels to pick (at most ``K``).
        bias: ``(C,)`` head bias, or ``None``.
        temperature: ``τ`` (a float or a 0-d tensor).
    """
    c = parts.shape[2]
    mean = parts.sum(dim=1, keepdim=True)
    if bias is not None:
        mean = mean + bias.view(1, 1, c, 1)
    base = torch.softmax(mean / temperature, dim=2)
    effect = (torch.softmax((mean - parts) / temperature, dim=2) - base).abs().sum(dim=2)
    return effect.topk(k, dim=1).indices


def top_channels(span: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` largest of ``span`` ``(B, K, n)`` along dim 1: ``(B, k, n)`` indices (argmax rounds for small ``k``: cheaper than top-k)."""
    if k > 3:
        return span.topk(k, dim=1).indices
    chosen = []
    for _ in range(k):
        best = span.argmax(dim=1, keepdim=True)
        chosen.append(best)
        span = span.scatter(1, best, -1.0)
    return torch.cat(chosen, dim=1) if chosen else span.new_zeros((span.shape[0], 0, span.shape[2]), dtype=torch.long)


class Draws:
    """The Rao–Blackwellised draws of a block of pixels: ``P`` ``(B, T, C, n)``, ``Q`` like it, ``H`` ``(B, T, n)``."""

    def __init__(self, p: torch.Tensor, q: torch.Tensor, h: torch.Tensor) -> None:
        self.p, self.q, self.h = p, q, h


class Branches:
    """What every draw of a block shares: the other channels' parts and the enumerated channels' exact branches.

    The ``2^k`` branch offsets ``o_s`` are computed once per block (relative to their class maximum); each draw adds
    them to its own logits (:func:`branch_moments`).

    Args:
        parts: ``(B, K, C, n)`` per-channel head outputs ``a_k``.
        chosen: ``(B, k, n)`` the enumerated channels of each pixel (:func:`select_channels`).
        keep: ``q``.
        temperature: ``τ`` in ``softmax(z / τ)``.
    """

    def __init__(self, parts: torch.Tensor, chosen: torch.Tensor, keep: float, temperature: float = 1.0) -> None:
        b, _, c, n = parts.shape
        patterns, self.weights = enumeration(chosen.shape[1], keep, parts.device, parts.dtype)
        self.rest, self.log_e = branch_factors(parts, chosen, patterns, 1.0 / temperature)
        self.temperature = temperature
        self.shape = (b, c, n)


def branch_factors(
    parts: torch.Tensor, chosen: torch.Tensor, patterns: torch.Tensor, inv_temperature: float | torch.Tensor, shift: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The factors of :class:`Branches`: the other channels' parts and the branches' offsets.

    Args:
        parts: ``(B, K, C, n)`` per-channel head outputs.
        chosen: ``(B, k, n)`` the enumerated channels.
        patterns: ``(2^k, k)`` scaled keep patterns (:func:`enumeration`).
        inv_temperature: ``1 / τ``.
        shift: Whether to make the offsets relative to their class maximum.

    Returns:
        ``rest`` ``(B, K, C·n)`` (the chosen channels zeroed) and the offsets ``o_s`` ``(B, 2^k, C, n)`` (relative to
        their class maximum with ``shift``).
    """
    b, kk, c, n = parts.shape
    k = chosen.shape[1]
    selected = torch.zeros(b, kk, n, device=parts.device, dtype=parts.dtype).scatter(1, chosen, 1.0)
    rest = (parts * (1.0 - selected).unsqueeze(2)).reshape(b, kk, c * n)
    picked = parts.gather(1, chosen.unsqueeze(2).expand(b, k, c, n))
    offsets = torch.matmul(patterns, picked.reshape(b, k, c * n)).view(b, patterns.shape[0], c, n) * inv_temperature
    return rest, (offsets - offsets.amax(dim=2, keepdim=True) if shift else offsets)


def branch_moments(z: torch.Tensor, log_s: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The branch-weighted softmax moments of ``T`` draws: the kernel of :func:`rao_blackwell_draws`.

    With ``r_t`` the draw's logits over the other channels and ``o_s`` branch ``s``'s offsets, every ``softmax(r_t +
    o_s)`` is computed from ``l = r_t + o_s`` less its class maximum (no underflow whatever the two logits' ranges),
    written as broadcast sums so that a compiler fuses it into one loop.

    Args:
        z: ``(B, T, C, n)`` the draws' logits over the non-enumerated channels (bias and temperature applied).
        log_s: ``(B, S, C, n)`` the branches' offsets ``o_s`` (any shift per pixel and branch).
        weights: ``(S,)`` the branches' probabilities ``π_s``.

    Returns:
        ``P_t`` and ``Q_t`` ``(B, T, C, n)``, ``H_t`` ``(B, T, n)``.
    """
    logits = z.unsqueeze(2) + log_s.unsqueeze(1)
    logits = logits - logits.amax(dim=3, keepdim=True)
    e = logits.exp()
    norm = e.sum(dim=3)
    entropy = norm.log() - (e * logits).sum(dim=3) / norm
    w = weights.view(1, 1, -1, 1)
    p = (e * (w / norm).unsqueeze(3)).sum(dim=2)
    q = (e.square() * (w / norm.square()).unsqueeze(3)).sum(dim=2)
    return p, q, (entropy * w).sum(dim=2)


def grouped_moments(z: torch.Tensor, log_s: torch.Tensor, weights: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`branch_moments` of ``T`` draws summed over ``groups`` groups of ``T / groups`` consecutive draws.

    Args:
        z: ``(N, T, C, L)`` the draws' logits over the non-enumerated channels (``T`` a multiple of ``groups``).
        log_s: ``(N, S, C, L)`` the branches' offsets.
        weights: ``(S,)`` the branches' probabilities.
        groups: ``G``.

    Returns:
        Group sums of ``P_t`` and ``Q_t`` ``(N, G, C, L)`` and of ``H_t`` ``(N, G, L)``.
    """
    return group_sums(*branch_moments(z, log_s, weights), groups)


def group_sums(p: torch.Tensor, q: torch.Tensor, h: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``P_t``, ``Q_t`` ``(N, T, C, L)`` and ``H_t`` ``(N, T, L)`` summed over ``groups`` groups of ``T / groups`` consecutive draws."""
    n, t, c, length = p.shape
    per = t // groups
    return p.view(n, groups, per, c, length).sum(2), q.view(n, groups, per, c, length).sum(2), h.view(n, groups, per, length).sum(2)


def draw_logits(masks: torch.Tensor, rest: torch.Tensor, bias: torch.Tensor, temperature: torch.Tensor, classes: int) -> torch.Tensor:
    """The draws' logits over the non-enumerated channels: ``(B, T, K)`` masks, ``rest`` ``(B, K, C·n)``, ``bias`` ``(C,)``,
    0-d ``τ`` → ``(B, T, C, n)``."""
    b, t, _ = masks.shape
    return torch.bmm(masks, rest).view(b, t, classes, -1).add_(bias.view(1, 1, classes, 1)).div_(temperature)


def draw_moments(
    masks: torch.Tensor, rest: torch.Tensor, bias: torch.Tensor, temperature: torch.Tensor, log_s: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`branch_moments` of draws given by their masks (arguments as :func:`draw_logits`; ``log_s`` ``(B, S, C, n)``)."""
    return branch_moments(draw_logits(masks, rest, bias, temperature, log_s.shape[2]), log_s, weights)


def rao_blackwell_draws(branches: Branches, bias: torch.Tensor | None, masks: torch.Tensor) -> Draws:
    """``T`` Rao–Blackwellised draws of a block's pixels.

    Args:
        branches: The block's shared parts (:class:`Branches`).
        bias: ``(C,)`` head bias, or ``None``.
        masks: ``(B, T, K)`` scaled keep-masks of the draws (0 or ``1/q``); the entries of each pixel's enumerated
            channels do not matter (those channels are summed over).

    Returns:
        The draws' ``P_t``, ``Q_t`` and ``H_t`` (float32).
    """
    c = branches.shape[1]
    b = bias if bias is not None else torch.zeros(c, device=masks.device, dtype=masks.dtype)
    tau = torch.tensor(branches.temperature, device=masks.device, dtype=masks.dtype)
    return Draws(*draw_moments(masks, branches.rest, b, tau, branches.log_e, branches.weights))
