"""Rao–Blackwellised MC statistics of a factorised dropout head: a few channels per pixel enumerated exactly.

With channel dropout (keep probability ``q``, inverted scaling) before a linear head, a sample's logits at a pixel
are ``z = b + Σ_k m_k a_k`` with ``m_k ∈ {0, 1/q}`` and ``a_k`` the channel's ``C`` head outputs there. At each pixel
the ``k`` channels whose ``a_k`` spans the widest logit range (``max_c a_kc - min_c a_kc``, a property of the
deterministic pass) are summed over exactly: every one of their ``2^k`` keep patterns ``s``, with its probability
``π_s = q^{|s|} (1-q)^{k-|s|}``; the other channels keep the sample's mask. A draw ``t`` is therefore

    P_t = Σ_s π_s softmax(z_ts),   Q_t = Σ_s π_s softmax(z_ts)²,   H_t = Σ_s π_s H[softmax(z_ts)]

whose expectations over the sampled masks are exactly ``E p``, ``E p²`` and ``E H[p]``: the estimator is unbiased by
construction, and the variance the enumerated channels would add is gone. Pure tensor code; no model here.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import torch

__all__ = ["Branches", "Draws", "enumeration", "rao_blackwell_draws", "select_channels"]


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


def select_channels(parts: torch.Tensor, k: int) -> torch.Tensor:
    """Per pixel, the ``k`` channels of widest logit range: ``parts`` ``(B, K, C, n)`` → ``(B, k, n)`` int64 indices."""
    spread = parts.amax(dim=2) - parts.amin(dim=2)
    return spread.topk(k, dim=1).indices


class Draws:
    """The Rao–Blackwellised draws of a block of pixels: ``P`` ``(B, T, C, n)``, ``Q`` like it, ``H`` ``(B, T, n)``."""

    def __init__(self, p: torch.Tensor, q: torch.Tensor, h: torch.Tensor) -> None:
        self.p, self.q, self.h = p, q, h


_FLOOR = -40.0


class Branches:
    """What every draw of a block shares: the other channels' parts and the enumerated channels' exact branches.

    Softmax factorises over a sum of logits, ``softmax(r + o)_c ∝ e^{r_c} e^{o_c}``, so the ``2^k`` branch exponentials
    ``e^{o_s}`` are computed once per block and a draw's branches cost a product instead of an exponential. Both factors
    are taken relative to their maximum over classes and floored at ``e^-40``, so no product underflows (the floor changes
    probabilities below ``4e-18`` only).

    Args:
        parts: ``(B, K, C, n)`` per-channel head outputs ``a_k``.
        chosen: ``(B, k, n)`` the enumerated channels of each pixel (:func:`select_channels`).
        keep: ``q``.
        temperature: ``τ`` in ``softmax(z / τ)``.
    """

    def __init__(self, parts: torch.Tensor, chosen: torch.Tensor, keep: float, temperature: float = 1.0) -> None:
        b, kk, c, n = parts.shape
        k = chosen.shape[1]
        selected = torch.zeros(b, kk, n, device=parts.device, dtype=parts.dtype).scatter_(1, chosen, 1.0)
        self.rest = (parts * (1.0 - selected).unsqueeze(2)).reshape(b, kk, c * n)
        patterns, self.weights = enumeration(k, keep, parts.device, parts.dtype)
        picked = parts.gather(1, chosen.unsqueeze(2).expand(b, k, c, n))
        offsets = torch.matmul(patterns, picked.reshape(b, k, c * n)).view(b, 2**k, c, n) / temperature
        self.log_e = (offsets - offsets.amax(dim=2, keepdim=True)).clamp_(min=_FLOOR)
        self.exp = self.log_e.exp()
        self.temperature = temperature
        self.shape = (b, c, n)


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
    b, c, n = branches.shape
    t = masks.shape[1]
    z = torch.bmm(masks, branches.rest).view(b, t, c, n)
    if bias is not None:
        z += bias.view(1, 1, c, 1)
    if branches.temperature != 1.0:
        z /= branches.temperature
    log_r = (z - z.amax(dim=2, keepdim=True)).clamp_(min=_FLOOR)
    e = log_r.exp().unsqueeze(2) * branches.exp.unsqueeze(1)
    norm = e.sum(dim=3, keepdim=True)
    p = e.div_(norm)
    ent = norm.squeeze(3).log_() - torch.linalg.vecdot(p, log_r.unsqueeze(2), dim=3) - torch.linalg.vecdot(p, branches.log_e.unsqueeze(1), dim=3)
    s = branches.weights.shape[0]
    w = branches.weights
    mean = torch.matmul(w, p.view(b * t, s, c * n)).view(b, t, c, n)
    second = torch.matmul(w, p.square_().view(b * t, s, c * n)).view(b, t, c, n)
    expected = torch.matmul(w, ent.view(b * t, s, n)).view(b, t, n)
    return Draws(mean, second, expected)
