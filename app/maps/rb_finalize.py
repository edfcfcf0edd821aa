"""Maps, bias correction and error replicates of grouped Rao–Blackwellised draws (:mod:`app.maps.rao_blackwell`).

The ``T`` draws fall into ``G`` contiguous groups (:func:`~app.maps.mc_error.sample_groups`) of independent draws.
With ``P_g``, ``Q_g``, ``H_g`` the group means and ``P̄``, ``Q̄``, ``H̄`` the means of all draws, per pixel:

- ``V_c = Σ_g n_g (P_gc - P̄_c)² / (T (G - 1))`` estimates ``Var(P̄_c)``;
- predictive entropy ``H[P̄] + ½ Σ_c V_c / P̄_c``: the plug-in entropy of a mean is low by ``½ Σ_c Var(P̄_c) / p_c``
  to second order, which is exactly what the delete-a-group jackknife's bias correction ``G θ - (G-1) mean_g θ₋g``
  adds back to that order; clamped to ``[0, log C]``;
- per-class variance ``Q̄_c - P̄_c² + V_c`` (unbiased: ``E[P̄²] = (E p)² + Var(P̄)``), the variance map at ``ŷ = argmax P̄``;
- expected entropy ``H̄`` (unbiased), mutual information = corrected entropy - ``H̄``, clamped at 0.

Error replicates are the delete-a-group jackknife linearised at ``P̄``: leaving group ``g`` out moves the means by
``f_g (P_g - P̄)`` with ``f_g = -n_g / (T - n_g)``, so replicate ``g`` of a map is the map plus ``f_g`` times its
gradient applied to that move (entropy: ``-Σ_c log P̄_c (P_gc - P̄_c)``). Their jackknife standard error
(:func:`~app.maps.mc_error.jackknife_se`) of any pixel mean is the standard error of the mean of the ``G`` group
influences: the same formula, with no per-group entropy or arg-max. That error has ``G - 1`` degrees of freedom, so
the replicates' spread is widened by ``t_{G-1} / z`` (the 97.5 % quantiles of Student's t and of the normal; 1.15 for
``G = 10``): ``mean ± 1.96 SE`` is then the t-interval of 95 % coverage. Pure tensor code; no model here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
from scipy import stats

__all__ = ["MAP_ORDER", "REPLICATED", "GroupSums", "finalize_block", "finalize_sums", "t_widening"]

_TINY = 1e-30


@lru_cache(maxsize=64)
def t_widening(groups: int) -> float:
    """``t_{G-1, 0.975} / z_{0.975}``: how much wider a 95 % interval is with an error of ``G - 1`` degrees of freedom."""
    return float(stats.t.ppf(0.975, groups - 1) / stats.norm.ppf(0.975))


class GroupSums:
    """Per-group sums of draws of a block of ``n`` pixels: ``P`` and ``Q`` ``(G, B, C, n)``, ``H`` ``(G, B, n)``.

    Args:
        sizes: Draws per group ``n_g`` (their sum is ``T``).
        batch: ``B``.
        classes: ``C``.
        pixels: ``n``.
        device: Where the sums live.
    """

    def __init__(self, sizes: list[int], batch: int, classes: int, pixels: int, device: torch.device) -> None:
        g = len(sizes)
        self.sizes = sizes
        self.p = torch.zeros(g, batch, classes, pixels, device=device)
        self.q = torch.zeros_like(self.p)
        self.h = torch.zeros(g, batch, pixels, device=device)

    def add(self, first: int, p: torch.Tensor, q: torch.Tensor, h: torch.Tensor) -> None:
        """Add the draws ``first, first + 1, …`` (``(B, t, C, n)``, ``(B, t, C, n)``, ``(B, t, n)``) to their groups."""
        last = first + p.shape[1]
        start = 0
        for g, size in enumerate(self.sizes):
            lo, hi = max(start, first), min(start + size, last)
            if lo < hi:
                block = slice(lo - first, hi - first)
                self.p[g] += p[:, block].sum(1)
                self.q[g] += q[:, block].sum(1)
                self.h[g] += h[:, block].sum(1)
            start += size


REPLICATED = ("entropy", "expected_entropy", "mutual_information", "variance")


def finalize_sums(p: torch.Tensor, q: torch.Tensor, h: torch.Tensor, sizes: torch.Tensor, widen: torch.Tensor, replicated: bool) -> tuple[torch.Tensor, ...]:
    """A block's maps and linearised replicates from its group sums: the pure kernel of :func:`finalize_block`.

    Args:
        p: ``(G, B, C, n)`` group sums of ``P_t``.
        q: ``(G, B, C, n)`` group sums of ``Q_t``.
        h: ``(G, B, n)`` group sums of ``H_t``.
        sizes: ``(G,)`` float draws per group.
        widen: 0-d :func:`t_widening` of ``G``.
        replicated: Whether to compute the replicates (needs ``G >= 2``).

    Returns:
        ``mean_probs``, ``class_variance`` ``(B, C, n)``, ``prediction`` ``(B, n)`` int64, ``entropy``,
        ``expected_entropy``, ``mutual_information``, ``variance`` ``(B, n)``, then with ``replicated`` the replicates
        of :data:`REPLICATED` stacked ``(4, G, B, n)``.
    """
    g, _, c, _ = p.shape
    total = sizes.sum()
    mean = p.sum(0) / total
    second = q.sum(0) / total
    expected = h.sum(0) / total
    ng = sizes.view(-1, 1, 1, 1)
    dev = p / ng - mean
    var_mean = (dev.square() * ng).sum(0) / (total * max(g - 1, 1))
    log_mean = mean.clamp(min=_TINY).log()
    entropy = (-(mean * log_mean).sum(1) + 0.5 * (var_mean / mean.clamp(min=_TINY)).sum(1)).clamp(0.0, math.log(c))
    class_var = (second - mean.square() + var_mean).clamp(min=0.0)
    top = mean.max(dim=1, keepdim=True).indices
    variance = class_var.gather(1, top).squeeze(1)
    maps = (mean, class_var, top.squeeze(1), entropy, expected, (entropy - expected).clamp(min=0.0), variance)
    if not replicated:
        return maps
    factor = (-sizes / (total - sizes) * widen).view(-1, 1, 1)
    d_ent = -(log_mean * dev).sum(2)
    d_exp = h / sizes.view(-1, 1, 1) - expected
    top_g = top.unsqueeze(0).expand(g, *top.shape)
    d_var = (q / ng - second).gather(2, top_g).squeeze(2) - 2.0 * mean.gather(1, top).squeeze(1) * dev.gather(2, top_g).squeeze(2)
    reps = torch.stack([entropy + factor * d_ent, expected + factor * d_exp, entropy - expected + factor * (d_ent - d_exp), variance + factor * d_var])
    return (*maps, reps)


def finalize_block(
    sums: GroupSums, out: dict[str, torch.Tensor], replicates: dict[str, torch.Tensor] | None, kernel: Callable[..., tuple[torch.Tensor, ...]] = finalize_sums
) -> None:
    """Write a block's maps into ``out`` and, with two groups or more, its linearised replicates into ``replicates``.

    Args:
        sums: The block's group sums.
        out: ``mean_probs`` and ``class_variance`` ``(B, C, n)``, ``prediction`` (int64), ``entropy``,
            ``expected_entropy``, ``mutual_information``, ``variance`` ``(B, n)`` views to fill.
        replicates: Sampled map name → ``(B, G, n)`` views to fill, or ``None``.
        kernel: :func:`finalize_sums` or a compiled version of it.
    """
    g = sums.p.shape[0]
    device = sums.p.device
    sizes = torch.tensor(sums.sizes, dtype=torch.float32, device=device)
    replicated = replicates is not None and g >= 2
    widen = torch.tensor(t_widening(g) if g >= 2 else 1.0, device=device)
    result = kernel(sums.p, sums.q, sums.h, sizes, widen, replicated)
    for name, value in zip(MAP_ORDER, result[:7], strict=True):
        out[name].copy_(value)
    if replicated and replicates is not None:
        for name, value in zip(REPLICATED, result[7], strict=True):
            replicates[name].copy_(value.transpose(0, 1))


MAP_ORDER = ("mean_probs", "class_variance", "prediction", "entropy", "expected_entropy", "mutual_information", "variance")
