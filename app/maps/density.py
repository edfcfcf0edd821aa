"""Feature-space density: how far a pixel's features lie from the features of the data the model was fitted on.

A class-conditional Gaussian with one shared (tied) covariance, as in Lee et al. 2018 ("A simple unified framework for
detecting out-of-distribution samples and adversarial attacks"), is fitted on the features the segmentation head sees
(``K`` channels per pixel), one mean per class:

    d²(x) = min_c (x − μ_c)ᵀ Σ⁻¹ (x − μ_c),

the squared Mahalanobis distance to the nearest class (the negative log-density of that class up to constants). The
map is the share of the fit's pixels whose ``d²`` is smaller (the empirical CDF of ``d²``, stored as quantiles): 0.5
is a median validation pixel, 1 is beyond every one of them, so the scale is fixed per model, never per image.

Fitting streams float64 sums (per-class sums and counts, one ``K × K`` scatter matrix of shifted features), so memory
does not depend on the number of pixels; the covariance gets a small ridge and is inverted by an eigendecomposition.
No model and no I/O here: features in, maps out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["CHUNK_PIXELS", "QUANTILE_LEVELS", "RIDGE", "DensityAccumulator", "FeatureDensity", "quantile_levels"]

CHUNK_PIXELS = 1 << 16
QUANTILE_LEVELS = 2049
RIDGE = 1e-6


def quantile_levels(count: int = QUANTILE_LEVELS) -> torch.Tensor:
    """``count`` CDF levels from 0 to 1, denser towards 1: ``1 − (1 − u)²`` on an even grid ``u``.

    The last step is ``(1 / (count − 1))²`` (2.4e-7 for the default), so the far tail, where out-of-distribution
    pixels fall, keeps its resolution.
    """
    if count < 2:
        raise ValueError(f"need at least 2 quantile levels, got {count}")
    u = torch.linspace(0.0, 1.0, count, dtype=torch.float64)
    return 1.0 - (1.0 - u) ** 2


def _pixel_blocks(features: torch.Tensor) -> list[tuple[int, slice]]:
    """``(batch index, rows)`` blocks of about :data:`CHUNK_PIXELS` pixels each."""
    _, _, height, width = features.shape
    rows = max(1, CHUNK_PIXELS // max(width, 1))
    return [(b, slice(r, min(r + rows, height))) for b in range(features.shape[0]) for r in range(0, height, rows)]


@dataclass(frozen=True)
class FeatureDensity:
    """A fitted class-conditional Gaussian with tied covariance, and the CDF of its distances on the fit's pixels.

    Attributes:
        means: ``(G, K)`` float64 class means.
        classes: ``(G,)`` int64: the model class of each mean (classes seen too rarely in the fit have none).
        whitening: ``(K, K)`` float64 ``W`` with ``W Wᵀ = Σ⁻¹``, so ``d² = ‖(x − μ) W‖²``.
        quantiles: ``(Q,)`` float64 non-decreasing quantiles of ``d²`` over the fit's pixels at ``levels``.
        levels: ``(Q,)`` float64 increasing CDF levels from 0 to 1.
    """

    means: torch.Tensor
    classes: torch.Tensor
    whitening: torch.Tensor
    quantiles: torch.Tensor
    levels: torch.Tensor

    def __post_init__(self) -> None:
        g, k = self.means.shape
        if self.classes.shape != (g,) or self.whitening.shape != (k, k):
            raise ValueError(
                f"density shapes disagree: means {tuple(self.means.shape)}, classes {tuple(self.classes.shape)}, whitening {tuple(self.whitening.shape)}"
            )
        if self.quantiles.shape != self.levels.shape or self.levels.numel() < 2:
            raise ValueError("quantiles and levels must be 1-D tensors of the same length, at least 2")
        if float(self.levels[0]) != 0.0 or float(self.levels[-1]) != 1.0 or bool((self.levels.diff() <= 0).any()):
            raise ValueError("levels must increase from 0 to 1")
        if bool((self.quantiles.diff() < 0).any()):
            raise ValueError("quantiles must not decrease")

    @property
    def channels(self) -> int:
        """``K``: feature channels."""
        return int(self.means.shape[1])

    def squared_distance(self, features: torch.Tensor) -> torch.Tensor:
        """``min_c (x − μ_c)ᵀ Σ⁻¹ (x − μ_c)`` per pixel, in float64 blocks of :data:`CHUNK_PIXELS` pixels.

        Args:
            features: ``(B, K, H, W)``.

        Returns:
            ``(B, H, W)`` float32.
        """
        if features.dim() != 4 or features.shape[1] != self.channels:
            raise ValueError(f"features must be (B, {self.channels}, H, W), got {tuple(features.shape)}")
        b, _, h, w = features.shape
        whitening = self.whitening.to(features.device)
        centres = self.means.to(features.device) @ whitening
        out = torch.empty(b, h, w, dtype=torch.float32, device=features.device)
        for index, rows in _pixel_blocks(features):
            x = features[index, :, rows].reshape(self.channels, -1).T.double() @ whitening
            best = torch.cdist(x, centres, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values if x.shape[0] else x.new_zeros(0)
            out[index, rows] = best.square().view(-1, w).float()
        return out

    def percentile(self, squared: torch.Tensor) -> torch.Tensor:
        """The share of the fit's pixels with a smaller ``d²``: linear between the stored quantiles, 0 below, 1 from the top.

        Args:
            squared: ``d²`` of any shape.

        Returns:
            Values in ``[0, 1]``, float32, of the same shape.
        """
        q = self.quantiles.to(squared.device)
        levels = self.levels.to(squared.device)
        v = squared.reshape(-1).double()
        above = torch.searchsorted(q, v, right=True)
        lo = (above - 1).clamp(0, q.numel() - 2)
        q0, q1 = q[lo], q[lo + 1]
        t = ((v - q0) / (q1 - q0).clamp(min=torch.finfo(torch.float64).tiny)).clamp(0.0, 1.0)
        value = levels[lo] + t * (levels[lo + 1] - levels[lo])
        value = torch.where(above == 0, 0.0, torch.where(above == q.numel(), 1.0, value))
        return value.float().view(squared.shape)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """The map: :meth:`percentile` of :meth:`squared_distance`, ``(B, H, W)`` float32 in ``[0, 1]``."""
        return self.percentile(self.squared_distance(features))


class DensityAccumulator:
    """Streaming float64 sums for fitting a :class:`FeatureDensity`: per-class sums and counts and one scatter matrix.

    Features are shifted by the first batch's mean before they are summed, so the scatter matrix does not lose
    digits to a large common offset; memory is ``C·K + K²`` float64 whatever the number of pixels.

    Args:
        classes: ``C``: labels run from 0 to ``C − 1``.
        channels: ``K``.
    """

    def __init__(self, classes: int, channels: int) -> None:
        self.sums = torch.zeros(classes, channels, dtype=torch.float64)
        self.counts = torch.zeros(classes, dtype=torch.int64)
        self.scatter = torch.zeros(channels, channels, dtype=torch.float64)
        self.shift: torch.Tensor | None = None

    @property
    def pixels(self) -> int:
        """Pixels added so far."""
        return int(self.counts.sum())

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add pixels.

        Args:
            features: ``(N, K)`` features of ``N`` pixels.
            labels: ``(N,)`` integer classes in ``[0, C)``.
        """
        if features.dim() != 2 or features.shape[1] != self.scatter.shape[0] or labels.shape != (features.shape[0],):
            raise ValueError(f"need (N, {self.scatter.shape[0]}) features and (N,) labels, got {tuple(features.shape)} and {tuple(labels.shape)}")
        if features.shape[0] == 0:
            return
        labels = labels.long().cpu()
        if int(labels.min()) < 0 or int(labels.max()) >= self.counts.numel():
            raise ValueError(f"labels must lie in [0, {self.counts.numel()})")
        x = features.detach().double().cpu()
        if self.shift is None:
            self.shift = x.mean(dim=0)
        x = x - self.shift
        self.sums.index_add_(0, labels, x)
        self.counts += torch.bincount(labels, minlength=self.counts.numel())
        self.scatter += x.T @ x

    def covariance(self, ridge: float = RIDGE) -> torch.Tensor:
        """The tied within-class covariance with its ridge, ``(K, K)`` float64.

        ``Σ = (1/N) Σ_c Σ_{i ∈ c} (x_i − μ_c)(x_i − μ_c)ᵀ + ridge · tr(Σ)/K · I``: the maximum-likelihood covariance
        shared by the classes, plus a ridge relative to its mean eigenvalue so that dead channels stay invertible.

        Raises:
            ValueError: no pixels, or features that do not vary.
        """
        counts = self.counts.double()
        seen = counts > 0
        if not bool(seen.any()):
            raise ValueError("no pixels were added")
        shifted_means = self.sums[seen] / counts[seen, None]
        between = (counts[seen, None, None] * shifted_means[:, :, None] * shifted_means[:, None, :]).sum(dim=0)
        cov = (self.scatter - between) / counts.sum()
        cov = (cov + cov.T) / 2
        scale = float(torch.trace(cov)) / cov.shape[0]
        if not scale > 0:
            raise ValueError("the features do not vary: the covariance is zero")
        return cov + ridge * scale * torch.eye(cov.shape[0], dtype=torch.float64)

    def fit(self, min_pixels: int = 1, ridge: float = RIDGE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The class means, their classes and the whitening ``W = V Λ^{-1/2}`` of :meth:`covariance` ``= V Λ Vᵀ``.

        Args:
            min_pixels: Classes with fewer pixels get no mean (their pixels still count in ``Σ``).
            ridge: See :meth:`covariance`.

        Returns:
            ``(G, K)`` means, ``(G,)`` their classes and ``(K, K)`` ``W`` with ``W Wᵀ = Σ⁻¹``, all float64.

        Raises:
            ValueError: no class has ``min_pixels`` pixels, or the features do not vary.
        """
        kept = self.counts >= max(min_pixels, 1)
        if not bool(kept.any()):
            raise ValueError(f"no class has {max(min_pixels, 1)} pixels to fit a mean on")
        eigenvalues, vectors = torch.linalg.eigh(self.covariance(ridge))
        whitening = vectors / eigenvalues.clamp(min=torch.finfo(torch.float64).tiny).sqrt()
        assert self.shift is not None
        means = self.sums[kept] / self.counts[kept, None].double() + self.shift
        return means, torch.nonzero(kept).flatten(), whitening
