"""Bias-corrected maps and their error replicates from grouped Rao–Blackwellised draws, by the delete-a-group jackknife.

The ``T`` draws of a pixel fall into ``G >= 3`` groups of ``n_g`` independent draws, with group sums ``P_g``, ``Q_g``,
``H_g`` (:class:`~app.maps.rb_finalize.GroupSums`). A map is first estimated as in :mod:`app.maps.rb_finalize`
(``θ``: the entropy of ``P̄`` plus the second-order term ``½ Σ_c V_c / P̄_c``, ``V`` the between-group estimate of
``Var(P̄)``; the class variance ``Q̄ - P̄² + V``), then again without each group (``θ₋g``, the same formulas on the
other ``G - 1`` groups), and corrected with a delete-a-group jackknife:

    θ_J = θ + Σ_g c_g · (θ - θ₋g)

The class variance's bias is ``∝ 1/T`` and takes the textbook weights ``c_g = 1 - n_g / T`` (Busing, Meijer and van
der Leeden 1999), i.e. ``θ_J = G θ - Σ_g (1 - n_g / T) θ₋g``. What the second-order term leaves of the entropy's bias
(the heavy tail of rare drops, which ``V`` misses) decays faster than ``1/T``, and those weights over-correct it; the
entropy takes :func:`order_weights`, exact for a bias ``∝ T^-α``, at ``α = JACKKNIFE_ORDER`` (1.1, measured:
``benchmarks/jackknife_order.py``). The expected entropy is linear in the draws, so it stays ``H̄``.
The replicates handed on for the standard errors (:mod:`app.maps.mc_error`) are ``θ_J + w · (θ₋g - mean_g θ₋g)``,
``w`` the Student-t widening of ``G - 1`` degrees of freedom (:func:`~app.maps.rb_finalize.t_widening`).

Nothing is found by subtracting one group from a total: a rare drop can put almost all of a class's probability in one
group, and ``total - group`` would then leave float32 rounding where the other groups hold ~1e-20, which the
``V / P̄`` term turns into nonsense. The leave-one-out sums add the other groups directly, and
each replicate's ``V`` is its own sum of squares less its own mean's square. Shapes: group sums
``(N, G, C, L)`` and ``(N, G, L)`` in, maps ``(N, C, L)`` / ``(N, L)`` and replicates ``(4, N, G, L)`` out (``N`` blocks
of ``L`` pixels, or a batch of ``L`` pixels). Pure tensor code; no model here.
"""

from __future__ import annotations

import math

import torch

__all__ = ["jackknife_maps", "leave_one_out", "order_weights"]

_TINY = 1e-30


def _entropy(mean: torch.Tensor, var_mean: torch.Tensor, groups: int, dim: int) -> torch.Tensor:
    """``-Σ m log m + ½ Σ V / m`` over ``dim``, ``V`` held to its bound ``m (1 - m) / (G - 1)`` (draws lie in ``[0, 1]``).

    The bound keeps a class of probability near 0, where float rounding leaves ``V`` a little above 0, from
    blowing the term up.
    """
    safe = mean.clamp(min=_TINY)
    bounded = torch.minimum(var_mean, safe * (1.0 - mean).clamp(min=0.0) / (groups - 1))
    return -(mean * safe.log()).sum(dim) + 0.5 * (bounded / safe).sum(dim)


def leave_one_out(x: torch.Tensor) -> torch.Tensor:
    """``Σ_{g' ≠ g} x_g'`` for every ``g`` along dim 1: the ``G - 1`` other groups added directly (no subtraction)."""
    g = x.shape[1]
    total = torch.roll(x, 1, dims=1)
    for shift in range(2, g):
        total = total + torch.roll(x, shift, dims=1)
    return total


def order_weights(sizes: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``c_g`` of ``θ_J = θ + Σ_g c_g (θ - θ₋g)`` that removes a bias ``∝ T^-α`` exactly: ``(n_g / T) · a_g``, ``a_g = (T - n_g)^α / (T^α - (T - n_g)^α)``.

    Args:
        sizes: ``(G,)`` draws per group.
        order: 0-d ``α >= 1``.

    Returns:
        ``(G,)``; at ``α = 1`` the delete-a-group weights ``1 - n_g / T`` (Busing, Meijer and van der Leeden 1999).
    """
    total = sizes.sum()
    kept = ((total - sizes) / total).pow(order)
    return sizes / total * kept / (1.0 - kept)


def jackknife_maps(
    p: torch.Tensor, q: torch.Tensor, h: torch.Tensor, sizes: torch.Tensor, widen: torch.Tensor, order: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Jackknife bias-corrected maps and replicates of a block's group sums (the pure kernel of :func:`~app.maps.rb_finalize.finalize_block`).

    Args:
        p: ``(N, G, C, L)`` group sums of ``P_t``.
        q: ``(N, G, C, L)`` group sums of ``Q_t``.
        h: ``(N, G, L)`` group sums of ``H_t``.
        sizes: ``(G,)`` float draws per group (``G >= 3``).
        widen: 0-d Student-t widening of the replicates' spread.
        order: 0-d ``α`` of the entropy's residual bias (:func:`order_weights`; 1: the textbook jackknife).

    Returns:
        ``mean_probs``, ``class_variance`` ``(N, C, L)``, ``prediction`` ``(N, L)`` int64, ``entropy``,
        ``expected_entropy``, ``mutual_information``, ``variance`` ``(N, L)``, and the replicates of entropy,
        expected entropy, mutual information and variance stacked ``(4, N, G, L)``.
    """
    g, c = p.shape[1], p.shape[2]
    total = sizes.sum()
    ng = sizes.view(1, -1, 1, 1)
    rest = (total - sizes).view(1, -1, 1, 1)
    mean = p.sum(1) / total
    second = q.sum(1) / total
    expected = h.sum(1) / total
    dev = p / ng - mean.unsqueeze(1)
    d2 = (dev.square() * ng).sum(1)
    var_mean = d2 / (total * (g - 1))
    entropy = _entropy(mean, var_mean, g, 1)
    class_var = second - mean.square() + var_mean
    top = mean.max(dim=1, keepdim=True).indices
    variance = class_var.gather(1, top).squeeze(1)
    mean_g = leave_one_out(p) / rest
    square_g = leave_one_out(p.square() / ng) / rest
    var_g = (square_g - mean_g.square()).clamp(min=0.0) / (g - 2)
    entropy_g = _entropy(mean_g, var_g, g - 1, 2)
    expected_g = leave_one_out(h) / rest.view(1, -1, 1)
    top_g = top.unsqueeze(1).expand(-1, g, -1, -1)
    second_g = leave_one_out(q.gather(2, top_g)) / rest
    variance_g = (second_g - (mean_g.square() - var_g).gather(2, top_g)).squeeze(2)

    def corrected(theta: torch.Tensor, leave: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return theta + (order_weights(sizes, alpha).view(1, -1, 1) * (theta.unsqueeze(1) - leave)).sum(1)

    entropy_j = corrected(entropy, entropy_g, order).clamp(0.0, math.log(c))
    variance_j = corrected(variance, variance_g, torch.ones_like(order)).clamp(min=0.0)
    mutual_j = (entropy_j - expected).clamp(min=0.0)
    mutual_g = entropy_g - expected_g

    def spread(center: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return center.unsqueeze(1) + widen * (values - values.mean(1, keepdim=True))

    reps = torch.stack([spread(entropy_j, entropy_g), spread(expected, expected_g), spread(mutual_j, mutual_g), spread(variance_j, variance_g)])
    return mean.clamp(min=0.0), class_var.clamp(min=0.0), top.squeeze(1), entropy_j, expected, mutual_j, variance_j, reps
