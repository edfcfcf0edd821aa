"""Monte-Carlo standard errors of map means, by the delete-a-group jackknife.

The ``T`` samples of an analysis are split into ``G`` contiguous groups of near-equal size
(:func:`sample_groups`). Leaving group ``g`` out gives a replicate of every map, made of the other
``T - T/G`` samples exactly as the map itself is made of all ``T``; the mean of a map over any set of
pixels then has the replicate means ``θ₋₁ … θ₋G`` and the standard error

    SE = sqrt((G - 1) / G · Σ_g (θ₋g - θ̄₋)²)      (Quenouille–Tukey jackknife, delete-a-group form).

It needs no model of the map's non-linearity (entropy of the mean, MI, variance at the arg-max) and
costs ``G`` finalisations, not more samples. With the default stratified masks, which balance the
drops across all ``T`` samples, it over-states the error (the groups are not each balanced): a
conservative bar. Pure functions; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from app.defaults import MC_GROUPS, NOISE_Z
from app.maps.registry import get_map

__all__ = ["difference_within_noise", "group_count", "jackknife_se", "mean_errors", "sample_groups"]


def group_count(samples: int, groups: int = MC_GROUPS) -> int:
    """``G`` for ``T = samples``: ``min(groups, T)``, or 0 when no error can be estimated (``T < 2``)."""
    if groups < 2:
        raise ValueError(f"groups must be >= 2, got {groups}")
    return min(groups, samples) if samples >= 2 else 0


def sample_groups(samples: int, groups: int) -> list[range]:
    """The contiguous sample ids of each of ``groups`` groups of ``range(samples)``, sizes differing by at most one."""
    if not 1 <= groups <= samples:
        raise ValueError(f"need 1 <= groups <= samples, got {groups} groups of {samples}")
    bounds = [g * samples // groups for g in range(groups + 1)]
    return [range(bounds[g], bounds[g + 1]) for g in range(groups)]


def jackknife_se(replicates: Sequence[float] | np.ndarray) -> float:
    """Jackknife standard error from the ``G`` leave-one-group-out estimates of a statistic."""
    values = np.asarray(replicates, dtype=np.float64)
    g = values.size
    if g < 2:
        raise ValueError(f"need at least 2 replicates, got {g}")
    return float(math.sqrt((g - 1) / g * float(np.sum((values - values.mean()) ** 2))))


def difference_within_noise(a: float, se_a: float, b: float, se_b: float, z: float = NOISE_Z) -> bool:
    """Whether ``a - b`` is within ``z`` combined standard errors ``sqrt(se_a² + se_b²)`` of zero.

    The errors are combined as if independent; two analyses with the same seed share their dropout
    masks, so their errors are positively correlated and the true error of the difference is smaller:
    the verdict "within noise" errs on the side of caution.
    """
    return abs(a - b) <= z * math.hypot(se_a, se_b)


def mean_errors(
    names: Iterable[str], replicate_means: Mapping[str, np.ndarray] | None, samples: int, bound: Mapping[str, float] | None = None
) -> dict[str, float | None]:
    """The MC standard error of each map's mean over some pixels.

    Args:
        names: The maps.
        replicate_means: Map name → its ``G`` leave-one-group-out means over the pixels, or ``None``.
        samples: ``T``; with ``T = 0`` every map is exact.
        bound: Map name → an upper bound to report where there are no replicates (tiled analyses).

    Returns:
        Name → standard error: ``0.0`` for maps of the deterministic pass (and for every map when ``T = 0``), the
        jackknife error where replicates are given, else the bound, else ``None`` (not estimable, e.g. ``T = 1``).
    """
    out: dict[str, float | None] = {}
    for name in names:
        if samples == 0 or not get_map(name).sampled:
            out[name] = 0.0
        elif replicate_means is not None and name in replicate_means:
            out[name] = jackknife_se(replicate_means[name])
        elif bound is not None and name in bound:
            out[name] = float(bound[name])
        else:
            out[name] = None
    return out
