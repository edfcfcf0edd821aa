"""Blend the MC statistics of overlapping tiles with Gaussian importance weights.

What is blended are the per-pixel *statistics* the maps are made of, never finished maps: the
deterministic softmax ``p``, the MC mean ``p̄``, the per-class variance and the expected entropy
``E_t[H[p_t]]``. With tile weights ``w_i`` a pixel's blend is the mixture of its tiles' sample sets:

    p = Σ w_i p_i / Σ w_i,   p̄ = Σ w_i p̄_i / Σ w_i,   E[H] = Σ w_i E_i[H] / Σ w_i,
    Var = Σ w_i (Var_i + p̄_i²) / Σ w_i − p̄²   (= E[p_t²] − p̄², the law of total variance).

The maps are then finalised from the blend exactly as from one tile (:func:`app.maps.moments.finalize`):
confidence ``max_c p``, entropy ``H[p̄]``, MI ``max(H[p̄] − E[H], 0)``, variance at ``argmax p̄``. The feature
distance (:mod:`app.maps.density`), a map of the deterministic pass, is blended as ``p`` is: ``Σ w_i d_i / Σ w_i``.

Each statistic is kept as a running weighted mean (West 1979; Chan et al. for the variance), so
``E[p_t²] − p̄²`` never cancels in float32, a pixel seen by one tile gets that tile's values, and a
constant input comes out exactly constant.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from app.maps.moments import StreamingMoments, UncertaintyMaps, finalize

__all__ = ["SIGMA_SCALE", "BandBlender", "BlendedStatistics", "finalize_blend", "finalize_bytes_per_pixel", "gaussian_weights"]

SIGMA_SCALE = 0.125


def gaussian_weights(height: int, width: int, device: torch.device | str = "cpu", sigma_scale: float = SIGMA_SCALE) -> torch.Tensor:
    """MONAI's Gaussian importance map: ``(height, width)`` float32, peak 1, ``σ = sigma_scale · side``.

    Centred between the middle pixels for even sides; values below the smallest positive float32
    after underflow are clamped to it, so every pixel of a tile keeps a positive weight.
    """

    def axis(n: int) -> torch.Tensor:
        sigma = max(sigma_scale * n, 1e-6)
        offset = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
        return torch.exp(-(offset**2) / (2 * sigma * sigma))

    weights = torch.outer(axis(height), axis(width))
    weights = weights / weights.max()
    tiny = float(torch.finfo(torch.float32).tiny)
    return weights.clamp(min=tiny).to(device=device, dtype=torch.float32)


@dataclass
class BlendedStatistics:
    """Blended statistics of a block of pixels.

    Attributes:
        probs: ``(C, H, W)`` deterministic softmax.
        mean_probs: ``(C, H, W)`` MC mean.
        class_variance: ``(C, H, W)`` per-class population variance.
        expected_entropy: ``(H, W)`` ``E_t[H[p_t]]``.
        feature_distance: ``(H, W)`` feature-distance map, or ``None`` when no density is used.
    """

    probs: torch.Tensor
    mean_probs: torch.Tensor
    class_variance: torch.Tensor
    expected_entropy: torch.Tensor
    feature_distance: torch.Tensor | None = None


class BandBlender:
    """Running weighted means of tile statistics over a band of ``rows × width`` pixels.

    A band holds the rows one row of tiles covers. When that row of tiles is done, the rows no later
    tile touches are read (:meth:`rows`) and dropped (:meth:`advance`), so memory stays one band.

    Args:
        classes: ``C``.
        rows: Band height (the tile height).
        width: Band width (the padded image width).
        device: Where the accumulators live.
        density: Also blend the feature distance (one more plane).
        sampled: Also blend the MC statistics (``p̄``, the class variance, ``E[H]``); without samples only ``p`` (and
            the distance) is blended, :func:`finalize_blend` reading nothing else, and the others are empty placeholders.
    """

    def __init__(self, classes: int, rows: int, width: int, device: torch.device | str = "cpu", density: bool = False, sampled: bool = True) -> None:
        self.weight = torch.zeros(rows, width, device=device)
        self.sampled = sampled
        shape = (rows, width) if sampled else (0, 0)
        probs = torch.zeros(classes, rows, width, device=device)
        self.stats = BlendedStatistics(
            probs=probs,
            mean_probs=torch.zeros(classes, *shape, device=device) if sampled else probs,
            class_variance=torch.zeros(classes, *shape, device=device),
            expected_entropy=torch.zeros(shape, device=device),
            feature_distance=torch.zeros(rows, width, device=device) if density else None,
        )

    @staticmethod
    def nbytes_per_pixel(classes: int) -> int:
        """Accumulator bytes per band pixel: ``3C + 3`` float32 (the last plane: the feature distance, when blended)."""
        return 4 * (3 * classes + 3)

    def add(self, top: int, left: int, weights: torch.Tensor, tile: BlendedStatistics) -> None:
        """Fold one tile's statistics in at ``(top, left)`` of the band.

        Args:
            top: First band row of the tile.
            left: First column of the tile.
            weights: ``(h, w)`` positive importance weights.
            tile: The tile's statistics, ``(C, h, w)`` and ``(h, w)``.
        """
        h, w = weights.shape
        rows, cols = slice(top, top + h), slice(left, left + w)
        total = self.weight[rows, cols]
        total += weights
        share = weights / total
        acc = self.stats
        acc.probs[:, rows, cols] += share * (tile.probs - acc.probs[:, rows, cols])
        if acc.feature_distance is not None and tile.feature_distance is not None:
            acc.feature_distance[rows, cols] += share * (tile.feature_distance - acc.feature_distance[rows, cols])
        if not self.sampled:
            return
        acc.expected_entropy[rows, cols] += share * (tile.expected_entropy - acc.expected_entropy[rows, cols])
        delta = tile.mean_probs - acc.mean_probs[:, rows, cols]
        acc.mean_probs[:, rows, cols] += share * delta
        var = acc.class_variance[:, rows, cols]
        var += share * (tile.class_variance - var) + share * (1.0 - share) * delta * delta

    def rows(self, count: int, cols: slice = slice(None)) -> BlendedStatistics:
        """Views of the blended statistics of the first ``count`` band rows (and columns ``cols``)."""
        s = self.stats
        distance = s.feature_distance[:count, cols] if s.feature_distance is not None else None
        return BlendedStatistics(
            s.probs[:, :count, cols], s.mean_probs[:, :count, cols], s.class_variance[:, :count, cols], s.expected_entropy[:count, cols], distance
        )

    def advance(self, count: int) -> None:
        """Drop the first ``count`` rows: the rest move up, the freed rows at the bottom start empty."""
        tensors: tuple[torch.Tensor, ...] = (self.weight, self.stats.probs)
        tensors += (self.stats.expected_entropy, self.stats.mean_probs, self.stats.class_variance) if self.sampled else ()
        tensors += (self.stats.feature_distance,) if self.stats.feature_distance is not None else ()
        height = self.weight.shape[0]
        count = min(count, height)
        for t in tensors:
            view = t if t.dim() == 3 else t.unsqueeze(0)
            for start in range(0, height - count, count):
                stop = min(start + count, height - count)
                view[:, start:stop].copy_(view[:, start + count : stop + count])
            view[:, height - count :].zero_()


def finalize_blend(stats: BlendedStatistics, samples: int) -> UncertaintyMaps:
    """The maps of blended statistics, through the one :func:`~app.maps.moments.finalize`.

    The blend is handed over as moments shifted by ``p̄`` with zero mean deviation and the blended
    variance as their second moment over one "sample", so ``finalize`` reads back ``p̄``, the
    variance and ``E[H]`` exactly. With ``samples == 0`` the blended ``p`` is finalised alone.

    Returns:
        Maps of batch 1: ``(1, H, W)``, probabilities ``(1, C, H, W)``.
    """
    probs = stats.probs.unsqueeze(0)
    distance = stats.feature_distance.unsqueeze(0) if stats.feature_distance is not None else None
    if samples == 0:
        return replace(finalize(probs, None), feature_distance=distance)
    moments = StreamingMoments(shift=stats.mean_probs.unsqueeze(0))
    moments.sum_d = torch.zeros_like(probs)
    moments.sum_d2 = stats.class_variance.unsqueeze(0)
    moments.sum_h = stats.expected_entropy.unsqueeze(0)
    moments.count = 1
    return replace(finalize(probs, moments), samples=samples, feature_distance=distance)


def finalize_bytes_per_pixel(classes: int) -> int:
    """Upper bound of the temporaries of :func:`finalize_blend` per pixel: ``5C + 8`` float32."""
    return 4 * (5 * classes + 8)
