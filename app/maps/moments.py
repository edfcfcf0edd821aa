"""Streaming MC statistics and the maps they finalise into.

Shapes: ``(B, C, H, W)`` probabilities in, ``(B, H, W)`` maps out. Natural log. No I/O and no model here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from app.maps.functions import class_argmax, entropy, softmax_confidence
from app.maps.registry import MAP_NAMES

__all__ = ["StreamingMoments", "UncertaintyMaps", "finalize"]


@dataclass
class UncertaintyMaps:
    """Every map of one analysis. Scalar maps are ``(B, H, W)`` float32.

    Attributes:
        prediction: ``(B, H, W)`` int64 ``argmax_c p̄_c``.
        confidence: softmax confidence of the deterministic pass.
        entropy: predictive entropy ``H[p̄]``.
        expected_entropy: aleatoric part ``mean_t H[p_t]``.
        mutual_information: epistemic part ``H[p̄] - mean_t H[p_t]``.
        variance: population variance of the predicted class's probability over samples.
        probs: ``(B, C, H, W)`` deterministic softmax ``p``.
        mean_probs: ``(B, C, H, W)`` ``p̄`` (equals ``probs`` when no samples).
        class_variance: ``(B, C, H, W)`` per-class population variance.
        samples: ``T``.
        replicates: Sampled map name → ``(B, G, H, W)`` leave-one-group-out replicates
            (:func:`app.maps.replicates.finalize_grouped`); ``None`` when no MC error was estimated.
        error_bound: Sampled map name → an upper bound of the MC standard error of its image mean, for tiled
            analyses, which keep no replicates (:func:`app.engine.sliding_window.sliding_window_mc`).
        feature_distance: ``(B, H, W)`` feature-distance map of the deterministic pass (:mod:`app.maps.density`);
            ``None`` when no density was given (:meth:`scalar_maps` then reports zeros).
        estimator: How the sampled maps were estimated: ``"sampled"`` (plug-in statistics of ``T`` samples) or
            ``"rao_blackwellised"`` (:mod:`app.maps.rao_blackwell`: ``k`` channels per pixel summed exactly, bias-corrected)
            or ``"propagated"`` (:mod:`app.maps.propagation`: no sampling, no replicates, a second-order truncation bias).
        enumerated: ``k``, the channels summed over exactly at each pixel (0 for ``"sampled"``).
        set_sizes: ``(B, L, H, W)`` uint8 conformal set sizes at ``L`` thresholds, made band by band by a tiled analysis
            that keeps no class arrays (:func:`app.engine.sliding_window.sliding_window_mc`); ``None`` otherwise.
    """

    prediction: torch.Tensor
    confidence: torch.Tensor
    entropy: torch.Tensor
    expected_entropy: torch.Tensor
    mutual_information: torch.Tensor
    variance: torch.Tensor
    probs: torch.Tensor
    mean_probs: torch.Tensor
    class_variance: torch.Tensor
    samples: int
    replicates: dict[str, torch.Tensor] | None = None
    error_bound: dict[str, float] | None = None
    feature_distance: torch.Tensor | None = None
    estimator: str = "sampled"
    enumerated: int = 0
    set_sizes: torch.Tensor | None = None

    def scalar_maps(self) -> dict[str, torch.Tensor]:
        """The float maps by name, in registry order (a map that was not computed, ``feature_distance`` without a density, is zeros)."""
        maps: dict[str, torch.Tensor] = {}
        for name in MAP_NAMES:
            value = getattr(self, name)
            maps[name] = value if value is not None else torch.zeros_like(self.confidence)
        return maps


class StreamingMoments:
    """Accumulate ``Σ (p_t - s)``, ``Σ (p_t - s)²`` and ``Σ H[p_t]`` as samples arrive.

    ``s`` is an optional shift (the deterministic softmax is a good one): it
    keeps the float32 variance free of cancellation. Memory is three
    image-sized float32 tensors, whatever ``T`` is.

    Args:
        shift: ``(B, C, H, W)`` or ``None`` (no shift).
    """

    def __init__(self, shift: torch.Tensor | None = None) -> None:
        self.count = 0
        self.shift = shift
        self.sum_d: torch.Tensor | None = None
        self.sum_d2: torch.Tensor | None = None
        self.sum_h: torch.Tensor | None = None

    def update(self, probs: torch.Tensor, copies: int, entropies: torch.Tensor | None = None) -> None:
        """Add a sample-major chunk of MC probabilities.

        Args:
            probs: ``(copies * B, C, H, W)``.
            copies: Number of samples in the chunk.
            entropies: ``(copies * B, H, W)`` per-sample entropies if already known.
        """
        n, c, h, w = probs.shape
        if n % copies:
            raise ValueError(f"chunk of {n} rows is not {copies} samples of equal batch")
        per = probs.float().view(copies, n // copies, c, h, w)
        d = per - self.shift if self.shift is not None else per
        ent = entropy(probs) if entropies is None else entropies
        sum_d, sum_d2 = d.sum(0), (d * d).sum(0)
        sum_h = ent.float().view(copies, n // copies, h, w).sum(0)
        if self.sum_d is None or self.sum_d2 is None or self.sum_h is None:
            self.sum_d, self.sum_d2, self.sum_h = sum_d, sum_d2, sum_h
        else:
            self.sum_d += sum_d
            self.sum_d2 += sum_d2
            self.sum_h += sum_h
        self.count += copies

    def mean(self) -> torch.Tensor:
        """``p̄``: ``(B, C, H, W)``, clamped at 0 (sums of differences can round a vanishing probability below it)."""
        if self.sum_d is None:
            raise ValueError("no samples accumulated")
        mean_d = self.sum_d / self.count
        return (mean_d + self.shift if self.shift is not None else mean_d).clamp_(min=0.0)

    def variance(self) -> torch.Tensor:
        """Per-class population variance ``mean_t (p_t - p̄)²``: ``(B, C, H, W)``, clamped at 0."""
        if self.sum_d is None or self.sum_d2 is None:
            raise ValueError("no samples accumulated")
        mean_d = self.sum_d / self.count
        return (self.sum_d2 / self.count - mean_d * mean_d).clamp(min=0.0)

    def expected_entropy(self) -> torch.Tensor:
        """``mean_t H[p_t]``: ``(B, H, W)``."""
        if self.sum_h is None:
            raise ValueError("no samples accumulated")
        return self.sum_h / self.count


def finalize(probs: torch.Tensor, moments: StreamingMoments | None) -> UncertaintyMaps:
    """Turn the deterministic softmax and the accumulated samples into maps.

    Args:
        probs: ``(B, C, H, W)`` deterministic softmax ``p``.
        moments: Accumulated MC samples, or ``None``/empty for ``T = 0``.
    """
    confidence = softmax_confidence(probs)
    if moments is None or moments.count == 0:
        h = entropy(probs)
        zeros = torch.zeros_like(confidence)
        return UncertaintyMaps(
            prediction=class_argmax(probs),
            confidence=confidence,
            entropy=h,
            expected_entropy=h.clone(),
            mutual_information=zeros,
            variance=zeros.clone(),
            probs=probs,
            mean_probs=probs,
            class_variance=torch.zeros_like(probs),
            samples=0,
        )
    mean = moments.mean()
    class_var = moments.variance()
    prediction = class_argmax(mean)
    expected_h = moments.expected_entropy()
    total_h = entropy(mean)
    return UncertaintyMaps(
        prediction=prediction,
        confidence=confidence,
        entropy=total_h,
        expected_entropy=expected_h,
        mutual_information=(total_h - expected_h).clamp(min=0.0),
        variance=class_var.gather(1, prediction.unsqueeze(1)).squeeze(1),
        probs=probs,
        mean_probs=mean,
        class_variance=class_var,
        samples=moments.count,
    )
