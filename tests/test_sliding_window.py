"""Sliding-window analysis: tiles agree with one pass, the blend is the mixture of the tiles' samples, tiles fit the budget."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import cast

import numpy as np
import pytest
import torch

from app.defaults import DEFAULT_ESTIMATOR
from app.engine.analysis import ClassArraysNotKept
from app.engine.blending import BandBlender, BlendedStatistics, finalize_blend, gaussian_weights
from app.engine.geometry import pad_to_stride, to_tensor
from app.engine.network import SegmentationNet
from app.engine.sampling import SamplingOptions, run_mc
from app.engine.sliding_window import MAX_OVERLAP, TileGrid, plan_grid, sliding_window_mc, tile_offsets, tile_pixels
from app.engine.tile_budget import MIN_TILE_STRIDES, TileCost, choose_tile, measure_cost
from app.io.bundle import Bundle
from app.io.npz import npz_bytes
from app.io.synthetic import make_scene
from app.maps.moments import UncertaintyMaps
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

SAMPLES, SEED = 8, 3
MAPS = ("confidence", "entropy", "expected_entropy", "mutual_information", "variance", "probs", "mean_probs", "class_variance")


def _scene() -> np.ndarray:
    """A seeded synthetic 200×232 scene: not a multiple of any stride, so the last tiles reach into the padding."""
    return make_scene("test", 1, size=232).image[:200]


def _tiled(bundle: Bundle, rgb: np.ndarray, tile: tuple[int, int]) -> UncertaintyMaps:
    stride = bundle.net.stride
    h, w = rgb.shape[:2]
    grid = plan_grid(h + (-h) % stride, w + (-w) % stride, tile, stride)
    norm = bundle.card.normalization
    return sliding_window_mc(bundle.net, rgb, norm.mean, norm.std, 3, grid, SamplingOptions(samples=SAMPLES, seed=SEED))


@pytest.mark.parametrize("strides", [12, 16])
def test_tiled_analysis_agrees_with_one_pass(tiny_bundle: Bundle, strides: int) -> None:
    """Tiles of 12 and 16 strides (96, 128 px; overlap 24, 32 px) against one pass over the whole 200×232 image.

    A tile's border pixels see zero padding where the whole image has context, so tiled and untiled
    maps cannot be equal; the Gaussian weights make such pixels count little. Measured on this scene
    (tiny model, T = 8): predictions agree on ≥ 99.8 % of pixels; per map (and per class probability)
    the mean |Δ| is ≤ 0.0031, the 99th percentile ≤ 0.036 and the maximum ≤ 0.135. The tolerances
    below leave ~2× margin. With the weights dropped (uniform blending) the mean |Δ| is 0.011–0.018,
    the 99th percentile 0.10–0.21 and agreement 98.8–99.4 %: every one of these bounds but the last
    then fails (checked once by replacing ``gaussian_weights`` with ones).
    """
    rgb = _scene()
    whole = Analyzer(tiny_bundle, estimator="sampled").analyze_image(rgb, AnalysisRequest(samples=SAMPLES, seed=SEED, resolution="full"))
    assert Analyzer(tiny_bundle).tile_grid(200, 232) is None
    tiled = _tiled(tiny_bundle, rgb, (strides * tiny_bundle.net.stride,) * 2)
    assert tiled.samples == SAMPLES
    assert (tiled.prediction[0].numpy() == whole.prediction).mean() >= 0.995
    for name in MAPS:
        ref = whole.maps[name] if name in whole.maps else getattr(whole, name)
        diff = np.abs(getattr(tiled, name)[0].numpy() - ref)
        assert diff.shape == ref.shape
        assert diff.mean() <= 0.006, name
        assert np.quantile(diff, 0.99) <= 0.06, name
        assert diff.max() <= 0.25, name


def test_band_finalisation_equals_blending_the_whole_image_at_once(tiny_bundle: Bundle) -> None:
    """Finalising rows band by band gives bit for bit what one image-sized accumulator gives."""
    rgb = _scene()
    stride = tiny_bundle.net.stride
    grid = plan_grid(200, 232, (96, 96), stride)
    assert len(grid.tops) > 2 and grid.overlap == (24, 24)
    norm = tiny_bundle.card.normalization
    options = SamplingOptions(samples=SAMPLES, seed=SEED)
    banded = sliding_window_mc(tiny_bundle.net, rgb, norm.mean, norm.std, 3, grid, options)
    whole = BandBlender(3, 200, 232)
    weights = gaussian_weights(96, 96)
    for top in grid.tops:
        for left in grid.lefts:
            m = run_mc(tiny_bundle.net, to_tensor(tile_pixels(rgb, top, left, grid.tile, stride), norm.mean, norm.std), options)
            whole.add(top, left, weights, BlendedStatistics(m.probs[0], m.mean_probs[0], m.class_variance[0], m.expected_entropy[0]))
    reference = finalize_blend(whole.rows(200), SAMPLES)
    for name in ("prediction", *MAPS):
        assert torch.equal(getattr(banded, name), getattr(reference, name)), name


@pytest.mark.parametrize("samples", [0, SAMPLES])
def test_analyzer_tiles_when_the_budget_is_small(tiny_bundle: Bundle, samples: int) -> None:
    """A budget of a third of the whole image's cost makes the analyser tile; the result stays within the tolerance above."""
    rgb = _scene()
    whole = Analyzer(tiny_bundle, estimator="sampled").analyze_image(rgb, AnalysisRequest(samples=samples, seed=SEED))
    small = Analyzer(tiny_bundle)
    small.memory_budget = int(small.cost.image_bytes(200, 232) / 3)
    grid = small.tile_grid(200, 232)
    assert grid is not None and len(grid.tops) * len(grid.lefts) > 1
    assert small.cost.tile_bytes(grid.tile, 232) <= small.memory_budget
    tiled = small.analyze_image(rgb, AnalysisRequest(samples=samples, seed=SEED))
    assert tiled.samples == samples
    assert tiled.analysed_size == tiled.input_size == (200, 232) and tiled.resolution == "full"
    assert (tiled.prediction == whole.prediction).mean() >= 0.995
    for name in whole.maps:
        assert np.abs(tiled.maps[name] - whole.maps[name]).mean() <= 0.006, name
    assert np.allclose(tiled.mean_probs.sum(0), 1.0, atol=1e-5)


def test_an_image_that_fits_runs_the_untiled_path_unchanged(tiny_bundle: Bundle) -> None:
    """Under the budget the analysis is one ``run_mc`` on the stride-padded image, bit for bit."""
    rgb = _scene()
    analysis = Analyzer(tiny_bundle).analyze_image(rgb, AnalysisRequest(samples=SAMPLES, seed=SEED))
    norm = tiny_bundle.card.normalization
    padded, _ = pad_to_stride(to_tensor(rgb, norm.mean, norm.std), tiny_bundle.net.stride)
    ref = run_mc(tiny_bundle.net, padded, SamplingOptions(samples=SAMPLES, seed=SEED, estimator=DEFAULT_ESTIMATOR))
    assert np.array_equal(analysis.prediction, ref.prediction[0, :200, :232].numpy())
    for name, values in analysis.maps.items():
        assert np.array_equal(values, ref.scalar_maps()[name][0, :200, :232].numpy()), name
    assert np.array_equal(analysis.class_variance, ref.class_variance[0, :, :200, :232].numpy())


def _stats(values: tuple[float, float, float, float], shape: tuple[int, int], classes: int = 3) -> BlendedStatistics:
    p, m, v, e = values
    return BlendedStatistics(torch.full((classes, *shape), p), torch.full((classes, *shape), m), torch.full((classes, *shape), v), torch.full(shape, e))


TILES = [(0, 0), (0, 9), (0, 18), (4, 5), (8, 0), (8, 9), (8, 18)]


def test_constant_tiles_blend_to_exactly_that_constant() -> None:
    constant = (0.3125, 0.4375, 0.015625, 0.6875)
    band = BandBlender(3, 20, 30)
    weights = gaussian_weights(12, 12)
    for top, left in TILES:
        band.add(top, left, weights, _stats(constant, (12, 12)))
    out = band.rows(20)
    assert bool((band.weight > 0).all())
    for tensor, value in zip((out.probs, out.mean_probs, out.class_variance, out.expected_entropy), constant, strict=True):
        assert torch.equal(tensor, torch.full_like(tensor, value))


def test_blend_is_the_weighted_mixture_of_the_tiles() -> None:
    """Against float64 sums: ``p̄ = Σ w p̄_i / Σ w`` and ``Var = Σ w (Var_i + p̄_i²) / Σ w − p̄²`` (the mixture's variance)."""
    rng = np.random.default_rng(0)
    band = BandBlender(3, 20, 30)
    weights = gaussian_weights(12, 12)
    w64 = weights.double()
    sums = {k: torch.zeros(20, 30, dtype=torch.float64) for k in ("w", "p", "m", "m2", "e")}
    for top, left in TILES:
        values = (float(rng.uniform(0, 1)), float(rng.uniform(0, 1)), float(rng.uniform(0, 0.05)), float(rng.uniform(0, 1)))
        band.add(top, left, weights, _stats(values, (12, 12)))
        p, m, v, e = values
        region = (slice(top, top + 12), slice(left, left + 12))
        for key, value in (("w", 1.0), ("p", p), ("m", m), ("m2", v + m * m), ("e", e)):
            sums[key][region] += w64 * value
    mean = sums["m"] / sums["w"]
    out = band.rows(20)
    expected = {"probs": sums["p"] / sums["w"], "mean_probs": mean, "class_variance": sums["m2"] / sums["w"] - mean**2}
    for name, reference in expected.items():
        torch.testing.assert_close(getattr(out, name).double(), reference.expand(3, 20, 30), atol=2e-6, rtol=0, msg=name)
    torch.testing.assert_close(out.expected_entropy.double(), sums["e"] / sums["w"], atol=2e-6, rtol=0)
    assert float(out.class_variance.min()) >= 0.0


def test_a_blend_without_samples_keeps_only_p_and_finalises_the_same() -> None:
    """Without samples only ``p`` and the distance are blended (no MC planes held), and the band's maps, across an
    advance, equal those of the full blender finalised with ``samples = 0``."""
    rng = np.random.default_rng(1)
    full, lean = BandBlender(3, 20, 30, density=True), BandBlender(3, 20, 30, density=True, sampled=False)
    assert lean.stats.class_variance.numel() == 0 and lean.stats.expected_entropy.numel() == 0 and lean.stats.mean_probs is lean.stats.probs
    weights = gaussian_weights(12, 12)
    for round_ in range(2):
        for top, left in TILES:
            probs = torch.from_numpy(rng.dirichlet(np.ones(3), (12, 12)).transpose(2, 0, 1).astype(np.float32))
            tile = BlendedStatistics(probs, probs, torch.zeros_like(probs), torch.rand(12, 12), torch.rand(12, 12))
            full.add(top, left, weights, tile)
            lean.add(top, left, weights, tile)
        a, b = finalize_blend(full.rows(15), 0), finalize_blend(lean.rows(15), 0)
        for name in ("prediction", "confidence", "entropy", "probs", "feature_distance"):
            torch.testing.assert_close(getattr(b, name), getattr(a, name), atol=0.0, rtol=0.0, msg=f"{name} (round {round_})")
        full.advance(7)
        lean.advance(7)


def test_advance_keeps_the_overlap_and_clears_the_rest() -> None:
    band = BandBlender(2, 10, 4)
    band.add(0, 0, torch.ones(10, 4), _stats((0.0, 0.0, 0.0, 0.0), (10, 4), 2))
    band.stats.expected_entropy.copy_(torch.arange(10.0)[:, None].expand(10, 4))
    band.advance(3)
    assert band.stats.expected_entropy[:, 0].tolist() == [3, 4, 5, 6, 7, 8, 9, 0, 0, 0]
    assert band.weight[:, 0].tolist() == [1] * 7 + [0] * 3


def test_finalize_blend_gives_the_map_definitions() -> None:
    stats = BlendedStatistics(
        probs=torch.tensor([0.7, 0.2, 0.1]).view(3, 1, 1),
        mean_probs=torch.tensor([0.4, 0.6, 0.0]).view(3, 1, 1),
        class_variance=torch.tensor([0.01, 0.02, 0.0]).view(3, 1, 1),
        expected_entropy=torch.tensor([[0.3]]),
    )
    maps = finalize_blend(stats, 5)
    h = -(0.4 * math.log(0.4) + 0.6 * math.log(0.6))
    assert maps.samples == 5 and int(maps.prediction) == 1
    assert float(maps.confidence) == pytest.approx(0.7)
    assert float(maps.entropy) == pytest.approx(h, abs=1e-6)
    assert float(maps.mutual_information) == pytest.approx(h - 0.3, abs=1e-6)
    assert float(maps.variance) == pytest.approx(0.02)
    deterministic = finalize_blend(stats, 0)
    assert float(deterministic.mutual_information) == 0.0 and int(deterministic.prediction) == 0


def test_gaussian_weights_peak_at_one_and_fall_as_a_gaussian_of_sigma_an_eighth() -> None:
    w = gaussian_weights(33, 16).double()
    assert float(w.max()) == pytest.approx(1.0) and bool((w > 0).all())
    assert torch.equal(w, w.flip(0)) and torch.equal(w, w.flip(1))
    sigma = 33 / 8
    assert float(w[16 + 4, 0] / w[16, 0]) == pytest.approx(math.exp(-16 / (2 * sigma * sigma)), rel=1e-6)


def test_tile_offsets_cover_the_length_with_the_overlap() -> None:
    assert tile_offsets(200, 96, 24) == (0, 72, 104)
    assert tile_offsets(64, 96, 0) == (0,)
    starts = tile_offsets(5000, 416, 96)
    assert starts[-1] + 416 == 5000 and all(b - a <= 416 - 96 for a, b in itertools.pairwise(starts))


def test_plan_grid_keeps_tiles_on_the_stride_grid() -> None:
    grid = plan_grid(3008, 4000, (384, 384), 32)
    assert grid.tile == (384, 384) and grid.overlap == (96, 96)
    assert all(t % 32 == 0 for t in (*grid.tops, *grid.lefts))
    assert plan_grid(64, 4000, (384, 384), 32) == TileGrid((64, 384), (0, 96), (0,), grid.lefts)


@pytest.mark.parametrize("shape", [(37, 45), (5, 3)], ids=["reflect", "replicate"])
def test_tile_pixels_are_the_padded_image(shape: tuple[int, int]) -> None:
    """Tiles reaching past the image's end hold what ``pad_to_stride`` pads there (reflect, or edge for tiny images)."""
    rgb = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    padded, _ = pad_to_stride(to_tensor(rgb, (0.0, 0.0, 0.0), (1 / 255,) * 3), 8)
    for top, left in ((0, 0), (padded.shape[2] - 8, padded.shape[3] - 8), (0, padded.shape[3] - 8)):
        tile = to_tensor(tile_pixels(rgb, top, left, (8, 8), 8), (0.0, 0.0, 0.0), (1 / 255,) * 3)
        assert torch.equal(tile[0], padded[0, :, top : top + 8, left : left + 8])


COST = TileCost(fixed=2000.0, sample=250.0, band=200.0)


def test_an_image_within_the_budget_is_not_tiled() -> None:
    assert choose_tile(256, 256, COST, int(COST.image_bytes(256, 256)), 32) is None
    assert choose_tile(256, 288, COST, int(COST.image_bytes(256, 256)), 32) is not None


@pytest.mark.parametrize(("height", "width"), [(3008, 4000), (4000, 3008), (7296, 5472), (640, 8000)])
def test_the_tile_is_the_largest_that_fits_the_budget(height: int, width: int) -> None:
    budget = 512 * 2**20
    tile = choose_tile(height, width, COST, budget, 32)
    assert tile is not None and tile[0] % 32 == 0 and tile[1] % 32 == 0
    assert COST.tile_bytes(tile, width) <= budget
    side = min(tile)
    bigger = (min(side + 32, height), min(side + 32, width))
    assert COST.tile_bytes(bigger, width) > budget
    assert COST.chunk_budget(budget, tile, width) >= COST.sample * tile[0] * tile[1]


def test_a_narrow_image_gets_full_width_tiles_as_tall_as_fit() -> None:
    budget = 512 * 2**20
    tile = choose_tile(8000, 256, COST, budget, 32)
    assert tile is not None and tile[1] == 256 and tile[0] > 256
    assert COST.tile_bytes(tile, 256) <= budget < COST.tile_bytes((tile[0] + 32, 256), 256)


def test_a_budget_below_any_tile_gets_the_smallest_tile() -> None:
    assert choose_tile(4000, 4000, COST, 1, 32) == (MIN_TILE_STRIDES * 32,) * 2


def test_measured_cost_charges_one_sample_like_auto_chunk(tiny_bundle: Bundle) -> None:
    """Per pixel, one MC sample costs three copies of the 8-channel decoder output and four 3-class logits (float32)."""
    cost = measure_cost(tiny_bundle.net.eval(), 3)
    assert cost.sample == (3 * 8 + 4 * 3) * 4
    assert cost.band == 4 * (3 * 3 + 3)
    assert cost.fixed > 4 * (8 + 3 + 9)


class _Chain(torch.nn.Module):
    """A stand-in network of ``depth`` 1×1 convolutions of 4 channels; ``keep`` holds every output to the end."""

    stride = 8

    def __init__(self, depth: int, keep: bool) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Conv2d(3 if i == 0 else 4, 4, 1) for i in range(depth)])
        self.keep = keep

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        kept = []
        for layer in self.layers:
            x = layer(x)
            kept.append(x) if self.keep else None
        return x

    def tail(self, cached: torch.Tensor, copies: int) -> torch.Tensor:
        return cached[:, :3]


def test_the_probe_charges_the_outputs_alive_at_once_not_every_output() -> None:
    """A chain that frees each output once the next exists peaks at two outputs (2 × 16 B a pixel) whatever its depth;
    one that keeps every output peaks at all of them (the rule before counted that for every network)."""

    def fixed(depth: int, keep: bool) -> float:
        return measure_cost(cast(SegmentationNet, _Chain(depth, keep).eval()), 3).fixed

    assert fixed(6, keep=False) == fixed(2, keep=False) == fixed(2, keep=True)
    assert fixed(6, keep=True) - fixed(6, keep=False) == 4 * 16


def test_the_overlap_is_a_quarter_of_the_tile_up_to_the_seam_safe_maximum() -> None:
    assert plan_grid(2000, 2000, (256, 256), 32).overlap == (64, 64)
    assert plan_grid(2000, 2000, (480, 480), 32).overlap == (96, 96) == (MAX_OVERLAP,) * 2
    assert plan_grid(2000, 2000, (1024, 1024), 32).overlap == (96, 96)
    assert plan_grid(2000, 2000, (1024, 1024), 16).overlap == (96, 96)


@pytest.mark.parametrize("tiled", [False, True])
def test_an_analysis_without_class_arrays_has_the_same_maps_and_refuses_them(tiny_bundle: Bundle, tiled: bool) -> None:
    """``class_arrays=False`` changes nothing but the ``(C, H, W)`` arrays, which it does not hold (whole or in tiles)."""
    rgb = _scene()
    analyzer = Analyzer(tiny_bundle)
    if tiled:
        analyzer.memory_budget = int(analyzer.cost.image_bytes(200, 232) / 3)
    assert (analyzer.tile_grid(200, 232) is not None) == tiled
    request = AnalysisRequest(samples=SAMPLES, seed=SEED, resolution="full")
    kept = analyzer.analyze_image(rgb, request)
    lean = analyzer.analyze_image(rgb, replace(request, class_arrays=False))
    assert lean.class_arrays is None and kept.class_arrays is not None and lean.num_classes == kept.num_classes == 3
    assert np.array_equal(lean.prediction, kept.prediction)
    for name, values in kept.maps.items():
        assert np.array_equal(lean.maps[name], values), name
    assert lean.regions == kept.regions and lean.mean_errors == kept.mean_errors
    assert npz_bytes(lean) == npz_bytes(kept)
    with pytest.raises(ClassArraysNotKept, match="class_arrays=True"):
        _ = lean.mean_probs
    with pytest.raises(ClassArraysNotKept):
        npz_bytes(lean, ("probs",))
