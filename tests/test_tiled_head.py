"""The factorised and tiled dropout heads equal one full forward per sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
from conftest import make_tiny_bundle

from app.engine.factorised_head import factorisable
from app.engine.network import SegmentationNet
from app.engine.sampling import SamplingOptions, run_mc
from app.engine.tiled_head import TiledHeadSampler, tileable
from app.io.bundle import load_bundle
from app.maps.moments import UncertaintyMaps

FIELDS = ("prediction", "confidence", "entropy", "expected_entropy", "mutual_information", "variance", "mean_probs", "class_variance")


def _close(a: UncertaintyMaps, b: UncertaintyMaps) -> None:
    for name in FIELDS:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=2e-5, rtol=1e-4, msg=name)


def _fpn() -> SegmentationNet:
    torch.manual_seed(1)
    net = smp.create_model(
        "fpn", encoder_name="mobilenet_v2", encoder_depth=3, decoder_pyramid_channels=32, decoder_segmentation_channels=32, classes=3, encoder_weights=None
    )
    with torch.no_grad():
        net.segmentation_head[0].weight.mul_(20.0)
    return SegmentationNet(net, ["head"], 0.3, "channel").eval()


def test_upsampling_head_uses_the_whole_image_factorisation_and_matches_full() -> None:
    net = _fpn()
    assert factorisable(net) and not tileable(net)
    x = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    fast = run_mc(net, x, SamplingOptions(samples=5, seed=2))
    full = run_mc(net, x, SamplingOptions(samples=5, seed=2, strategy="full"))
    _close(fast, full)
    assert float(fast.mutual_information.max()) > 1e-3


@pytest.mark.parametrize("tile_bytes", [1, 3_000, 10**9], ids=["one-row-one-sample", "several-tiles", "one-tile"])
@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_tiles_and_chunks_do_not_change_the_result(tmp_path: Path, tile_bytes: int, temperature: float) -> None:
    bundle = load_bundle(make_tiny_bundle(tmp_path / "b"))
    net = bundle.net
    assert tileable(net)
    x = torch.randn(1, 3, 40, 24, generator=torch.Generator().manual_seed(3))
    full = run_mc(net, x, SamplingOptions(samples=7, seed=5, temperature=temperature, strategy="full"))
    with torch.inference_mode():
        probs, moments, tiled_replicates = TiledHeadSampler(net, net.prefix(x), tile_bytes=tile_bytes).run(5, 7, temperature)
    torch.testing.assert_close(probs, full.probs, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(moments.mean(), full.mean_probs, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(moments.variance(), full.class_variance, atol=2e-6, rtol=1e-4)
    torch.testing.assert_close(moments.expected_entropy(), full.expected_entropy, atol=2e-6, rtol=1e-5)
    assert moments.count == 7
    assert tiled_replicates is not None and full.replicates is not None
    assert {name: r.shape[1] for name, r in tiled_replicates.items()} == dict.fromkeys(full.replicates, 7)
    for name, replicate in full.replicates.items():
        torch.testing.assert_close(tiled_replicates[name], replicate, atol=2e-6, rtol=1e-4)


def test_element_dropout_and_decoder_sites_are_not_tiled(tmp_path: Path) -> None:
    assert not tileable(load_bundle(make_tiny_bundle(tmp_path / "e", mode="element")).net)
    assert not tileable(load_bundle(make_tiny_bundle(tmp_path / "d", sites=["head", "decoder.blocks.1"])).net)


@pytest.mark.parametrize("tile_bytes", [1, 3_000, 10**9], ids=["one-row-one-sample", "several-tiles", "one-tile"])
@pytest.mark.parametrize("step", [2, 3])
def test_replicates_on_a_sub_grid_are_those_pixels_of_the_full_replicates(tmp_path: Path, tile_bytes: int, step: int) -> None:
    bundle = load_bundle(make_tiny_bundle(tmp_path / "b"))
    net = bundle.net
    x = torch.randn(1, 3, 40, 24, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        cached = net.prefix(x)
        probs, moments, every = TiledHeadSampler(net, cached, tile_bytes=tile_bytes).run(5, 7, 1.0)
        sub_probs, sub_moments, sub = TiledHeadSampler(net, cached, tile_bytes=tile_bytes).run(5, 7, 1.0, replicate_step=step)
    assert every is not None and sub is not None
    for name, replicate in every.items():
        assert sub[name].shape == (1, 7, -(-40 // step), -(-24 // step)), name
        torch.testing.assert_close(sub[name], replicate[..., ::step, ::step], atol=0.0, rtol=0.0, msg=name)
    torch.testing.assert_close(sub_probs, probs, atol=0.0, rtol=0.0)
    torch.testing.assert_close(sub_moments.mean(), moments.mean(), atol=0.0, rtol=0.0)
