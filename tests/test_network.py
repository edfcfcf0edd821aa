"""SegmentationNet: dropout sites, stage detection, and the prefix/tail split."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_card
from torch import nn

from app.engine.dropout import MCDropout, sampling_plan
from app.engine.network import SegmentationNet
from app.io.bundle import build_network


def _x(h: int = 32, w: int = 48, b: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _net(sites: list[str], mode: str = "channel", rate: float = 0.5) -> SegmentationNet:
    torch.manual_seed(0)
    return build_network(tiny_card(sites, rate=rate, mode=mode)).eval()


@pytest.mark.parametrize(
    ("sites", "stage"),
    [
        (["head"], "head"),
        (["segmentation_head.0"], "head"),
        (["decoder.blocks.1"], "decoder"),
        (["head", "decoder.blocks.1"], "decoder"),
        (["decoder.blocks.2", "head"], "decoder"),
        (["encoder.features.2"], "encoder"),
        (["head", "encoder.features.2", "decoder.blocks.0"], "encoder"),
        ([], "head"),
    ],
)
def test_first_stochastic_stage(sites: list[str], stage: str) -> None:
    """The earliest dropout site decides the stochastic stage."""
    assert _net(sites).first_stochastic_stage == stage


def test_unknown_site_is_a_value_error_naming_it() -> None:
    """A site that names no submodule is a ValueError that quotes the site."""
    torch.manual_seed(0)
    inner = build_network(tiny_card([])).model
    with pytest.raises(ValueError, match=r"decoder\.blocks\.9"):
        SegmentationNet(inner, ["decoder.blocks.9"], 0.5)
    with pytest.raises(ValueError, match="nope"):
        SegmentationNet(inner, ["nope"], 0.5)


def test_non_smp_model_runs_whole() -> None:
    """A model without encoder/decoder/segmentation_head has stage 'all'; 'head' is rejected."""
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    net = SegmentationNet(plain, ["1"], 0.5, stride=4).eval()
    assert net.first_stochastic_stage == "all"
    assert net.stride == 4
    x = _x(8, 8)
    assert torch.equal(net.prefix(x), x)
    assert torch.allclose(net.tail(net.prefix(x), 2), plain(x).repeat(2, 1, 1, 1), atol=1e-6)
    with pytest.raises(ValueError, match="segmentation_head"):
        SegmentationNet(nn.Sequential(nn.Conv2d(3, 2, 1)), ["head"], 0.5)


def test_stride_is_the_encoder_output_stride() -> None:
    """A depth-3 encoder has stride 2**3 = 8."""
    assert _net(["head"]).stride == 8


@pytest.mark.parametrize("sites", [["head"], ["decoder.blocks.1"], ["encoder.features.2"], ["head", "decoder.blocks.1"]])
def test_prefix_tail_equals_forward_without_plan(sites: list[str]) -> None:
    """Without a plan, tail(prefix(x), k) is k sample-major copies of the plain forward."""
    net = _net(sites)
    x = _x(b=2)
    with torch.no_grad():
        full = net(x)
        one = net.tail(net.prefix(x), 1)
        three = net.tail(net.prefix(x), 3)
    assert full.shape == (2, 3, 32, 48)
    assert torch.allclose(one, full, atol=1e-5)
    assert torch.allclose(three, full.repeat(3, 1, 1, 1), atol=1e-5)


@pytest.mark.parametrize("sites", [["head"], ["decoder.blocks.1"], ["head", "decoder.blocks.1"]])
def test_tail_under_plan_equals_full_forward_per_sample(sites: list[str]) -> None:
    """Batched tail over samples [0..2] equals one full forward per sample with the same masks."""
    net = _net(sites)
    x = _x(b=2, seed=1)
    with torch.no_grad():
        cached = net.prefix(x)
        with sampling_plan(4, [0, 1, 2]):
            batched = net.tail(cached, 3)
        singles = []
        for t in range(3):
            with sampling_plan(4, [t]):
                singles.append(net(x))
        deterministic = net(x)
    assert torch.allclose(batched, torch.cat(singles), atol=1e-5)
    assert not torch.allclose(singles[0], deterministic, atol=1e-3)


def test_head_site_drops_the_head_input() -> None:
    """'head' applies the seeded mask to the decoder output before the segmentation head."""
    net = _net(["head"], rate=0.5)
    x = _x(seed=2)
    with torch.no_grad():
        decoded = net.model.get_submodule("decoder")(net.model.get_submodule("encoder")(x))
        with sampling_plan(9, [5]):
            got = net(x)
            mask = MCDropout(0.5, "channel", site=0).eval()(torch.ones(1, decoded.shape[1], 1, 1))
        expected = net.model.get_submodule("segmentation_head")(decoded * mask)
    assert (mask == 0).any() and (mask != 0).any()
    assert torch.allclose(got, expected, atol=1e-5)


def test_decoder_site_drops_the_block_output_with_its_site_index() -> None:
    """A submodule site applies the mask (seeded with its index in ``sites``) to that module's output."""
    net = _net(["head", "decoder.blocks.1"], rate=0.5)
    seen: dict[str, torch.Tensor] = {}
    block2 = net.model.get_submodule("decoder.blocks.2")
    handle = block2.register_forward_pre_hook(lambda _m, args: seen.__setitem__("in", args[0].clone()))
    raw: dict[str, torch.Tensor] = {}
    block1 = net.model.get_submodule("decoder.blocks.1")
    x = _x(seed=3)
    with torch.no_grad():
        with sampling_plan(2, [1]):
            net(x)
        handle.remove()
        raw_handle = block1.register_forward_hook(lambda _m, _a, out: raw.__setitem__("out", out.clone()))
        net(x)  # no plan: the dropout hook is the identity
        raw_handle.remove()
        with sampling_plan(2, [1]):
            mask = MCDropout(0.5, "channel", site=1).eval()(torch.ones(1, raw["out"].shape[1], 1, 1))
    assert (mask == 0).any() and (mask != 0).any()
    assert torch.allclose(seen["in"], raw["out"] * mask, atol=1e-5)


def test_sites_are_recorded_and_get_one_dropout_each() -> None:
    """Each site gets an MCDropout with the configured rate, mode and its index."""
    net = _net(["head", "decoder.blocks.1"], mode="element", rate=0.25)
    assert net.sites == ("head", "decoder.blocks.1")
    assert [(d.p, d.mode, d.site) for d in net.dropouts] == [(0.25, "element", 0), (0.25, "element", 1)]
