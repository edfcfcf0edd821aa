"""The feature density's math (app/maps/density.py) against independent NumPy/SciPy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis

from app.maps import density as density_module
from app.maps.density import RIDGE, DensityAccumulator, FeatureDensity, quantile_levels

K, C = 4, 3


def _data(seed: int, n: int = 600, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pixels of ``K`` correlated features around three class centres, and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, n)
    centres = rng.normal(0, 3, (C, K))
    mixing = rng.normal(0, 1, (K, K))
    return centres[labels] + rng.normal(0, 1, (n, K)) @ mixing + offset, labels


def _numpy_fit(x: np.ndarray, y: np.ndarray, ridge: float = RIDGE) -> tuple[np.ndarray, np.ndarray]:
    means = np.stack([x[y == c].mean(axis=0) for c in range(C)])
    centred = x - means[y]
    cov = centred.T @ centred / len(x)
    return means, cov + ridge * np.trace(cov) / K * np.eye(K)


def _density(acc: DensityAccumulator, quantiles: torch.Tensor | None = None) -> FeatureDensity:
    means, classes, whitening = acc.fit()
    levels = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    return FeatureDensity(means, classes, whitening, quantiles if quantiles is not None else torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), levels)


def test_streaming_fit_equals_numpy_mean_and_within_class_covariance() -> None:
    x, y = _data(0)
    streamed = DensityAccumulator(C, K)
    for part in np.array_split(np.arange(len(x)), 7):
        streamed.update(torch.from_numpy(x[part]).float(), torch.from_numpy(y[part]))
    whole = DensityAccumulator(C, K)
    whole.update(torch.from_numpy(x).float(), torch.from_numpy(y))
    means, cov = _numpy_fit(x.astype(np.float32).astype(np.float64), y)
    for acc in (streamed, whole):
        fitted_means, classes, whitening = acc.fit()
        assert classes.tolist() == [0, 1, 2]
        np.testing.assert_allclose(fitted_means.numpy(), means, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(acc.covariance().numpy(), cov, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose((whitening @ whitening.T).numpy(), np.linalg.inv(cov), rtol=1e-8, atol=1e-10)
    assert streamed.pixels == whole.pixels == len(x)


def test_the_covariance_keeps_its_digits_under_a_large_common_offset() -> None:
    """Features shifted by 1e6 give the covariance of the unshifted ones: the sums are taken around the first batch's mean."""
    x, y = _data(1)
    acc = DensityAccumulator(C, K)
    for part in np.array_split(np.arange(len(x)), 3):
        acc.update(torch.from_numpy(x[part] + 1e6), torch.from_numpy(y[part]))
    np.testing.assert_allclose(acc.covariance().numpy(), _numpy_fit(x, y)[1], rtol=1e-7, atol=1e-7)


def test_distance_is_the_scipy_mahalanobis_distance_to_the_nearest_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """Also across several pixel blocks (the block size made tiny), batches and rows."""
    monkeypatch.setattr(density_module, "CHUNK_PIXELS", 7)
    x, y = _data(2)
    acc = DensityAccumulator(C, K)
    acc.update(torch.from_numpy(x), torch.from_numpy(y))
    density = _density(acc)
    means, cov = _numpy_fit(x, y)
    inverse = np.linalg.inv(cov)
    features = torch.from_numpy(np.random.default_rng(3).normal(0, 4, (2, K, 5, 6)))
    got = density.squared_distance(features.float())
    assert got.shape == (2, 5, 6) and got.dtype == torch.float32
    pixels = features.numpy().transpose(0, 2, 3, 1)
    expected = np.array([[[min(mahalanobis(p, m, inverse) ** 2 for m in means) for p in row] for row in image] for image in pixels])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_a_class_seen_too_rarely_gets_no_mean_but_its_pixels_count() -> None:
    x, y = _data(4)
    y = np.where(y == 1, 2, y)
    y[:3] = 1
    acc = DensityAccumulator(C, K)
    acc.update(torch.from_numpy(x), torch.from_numpy(y))
    means, classes, _ = acc.fit(min_pixels=4)
    assert classes.tolist() == [0, 2]
    np.testing.assert_allclose(means.numpy(), [x[y == 0].mean(axis=0), x[y == 2].mean(axis=0)], rtol=1e-10)
    np.testing.assert_allclose(acc.covariance().numpy(), _numpy_fit(x, y)[1], rtol=1e-10)
    with pytest.raises(ValueError, match="no class has 1000 pixels"):
        acc.fit(min_pixels=1000)


def test_a_dead_channel_stays_invertible() -> None:
    """A channel that never varies (a ReLU that never fires) gets the ridge's variance, not a division by zero."""
    x, y = _data(5)
    x[:, 2] = 0.0
    acc = DensityAccumulator(C, K)
    acc.update(torch.from_numpy(x), torch.from_numpy(y))
    density = _density(acc)
    d = density.squared_distance(torch.from_numpy(x.T.reshape(1, K, -1, 1)).float())
    assert bool(torch.isfinite(density.whitening).all()) and bool(torch.isfinite(d).all())
    flat = DensityAccumulator(C, K)
    flat.update(torch.ones(5, K), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="do not vary"):
        flat.fit()


def test_percentile_interpolates_the_stored_cdf_and_is_fixed_at_both_ends() -> None:
    levels = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    quantiles = torch.tensor([1.0, 2.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    density = FeatureDensity(torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.long), torch.eye(2, dtype=torch.float64), quantiles, levels)
    values = torch.tensor([[0.0, 1.0, 1.5, 2.0, 3.0, 6.0, 8.0, 100.0]])
    got = density.percentile(values)
    np.testing.assert_allclose(got.numpy(), [[0.0, 0.0, 0.125, 0.5, 0.625, 0.875, 1.0, 1.0]], atol=1e-7)
    assert got.dtype == torch.float32 and got.shape == values.shape


def test_percentile_of_a_sample_against_its_own_quantiles_is_its_empirical_cdf() -> None:
    sample = torch.from_numpy(np.random.default_rng(6).gamma(2.0, 3.0, 20001))
    levels = quantile_levels(257)
    density = FeatureDensity(
        torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.long), torch.eye(1, dtype=torch.float64), torch.quantile(sample, levels), levels
    )
    got = density.percentile(sample).double()
    ranks = (torch.argsort(torch.argsort(sample)).double()) / (sample.numel() - 1)
    assert float((got - ranks).abs().max()) < 2e-3
    assert float(got.min()) == 0.0 and float(got.max()) == 1.0


def test_quantile_levels_run_from_0_to_1_densest_at_the_top() -> None:
    levels = quantile_levels(5)
    np.testing.assert_allclose(levels.numpy(), [0.0, 0.4375, 0.75, 0.9375, 1.0])
    default = quantile_levels()
    steps = default.diff()
    assert float(default[0]) == 0.0 and float(default[-1]) == 1.0 and bool((steps > 0).all())
    assert float(steps[-1]) == pytest.approx(1 / 2048**2)
    with pytest.raises(ValueError):
        quantile_levels(1)


def test_a_density_with_inconsistent_parts_is_refused() -> None:
    eye = torch.eye(2, dtype=torch.float64)
    levels = torch.tensor([0.0, 1.0], dtype=torch.float64)
    q = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="shapes"):
        FeatureDensity(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.long), eye, q, levels)
    with pytest.raises(ValueError, match="levels"):
        FeatureDensity(torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.long), eye, q, torch.tensor([0.0, 0.9], dtype=torch.float64))
    with pytest.raises(ValueError, match="quantiles"):
        FeatureDensity(torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.long), eye, torch.tensor([1.0, 0.0], dtype=torch.float64), levels)
    density = FeatureDensity(torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.long), eye, q, levels)
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        density.squared_distance(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="labels"):
        DensityAccumulator(2, 2).update(torch.zeros(3, 2), torch.tensor([0, 1, 2]))
