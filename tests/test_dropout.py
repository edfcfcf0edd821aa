"""Seeded MC-dropout masks: determinism, independence from chunking, rates and scaling."""

from __future__ import annotations

import pytest
import torch

from app.engine.dropout import MCDropout, mask_seed, sampling_plan


def _ones(n: int = 1, c: int = 8, h: int = 6, w: int = 5) -> torch.Tensor:
    return torch.ones(n, c, h, w)


@pytest.mark.parametrize("mode", ["channel", "element"])
def test_chunk_of_samples_equals_individual_samples(mode: str) -> None:
    """Masks for samples [0, 1, 2] in one batch equal [0], [1], [2] drawn one at a time (B = 2 images)."""
    drop = MCDropout(0.5, mode, site=3).eval()
    b = 2
    x = torch.randn(b, 16, 4, 4, generator=torch.Generator().manual_seed(0))
    with sampling_plan(7, [0, 1, 2]):
        chunk = drop(x.repeat(3, 1, 1, 1))
    singles = []
    for t in range(3):
        with sampling_plan(7, [t]):
            singles.append(drop(x))
    assert torch.equal(chunk, torch.cat(singles))
    # a chunk starting later ([1, 2]) reproduces the tail of the first chunk
    with sampling_plan(7, [1, 2]):
        later = drop(x.repeat(2, 1, 1, 1))
    assert torch.equal(later, chunk[b:])
    # and the samples are not all the same mask
    assert not torch.equal(singles[0], singles[1])


def test_masks_depend_on_seed_sample_and_site_only() -> None:
    """Same (seed, sample, site) → same mask regardless of global RNG; any change of the triple changes it."""
    x = _ones(1, 64, 1, 1)

    def draw(seed: int, sample: int, site: int) -> torch.Tensor:
        torch.manual_seed(seed * 1000 + sample + 17 * site + 99)  # scramble the global RNG: it must not matter
        with sampling_plan(seed, [sample]):
            return MCDropout(0.5, "channel", site=site).eval()(x)

    base = draw(1, 0, 0)
    torch.manual_seed(12345)
    assert torch.equal(base, draw(1, 0, 0))
    assert not torch.equal(base, draw(2, 0, 0))
    assert not torch.equal(base, draw(1, 1, 0))
    assert not torch.equal(base, draw(1, 0, 1))


def test_mask_seed_is_deterministic_and_distinct() -> None:
    """mask_seed is a pure function into [0, 2^63) with no collisions on a small grid."""
    seeds = {mask_seed(s, t, k) for s in range(4) for t in range(6) for k in range(3)}
    assert len(seeds) == 4 * 6 * 3
    assert all(0 <= v < 2**63 for v in seeds)
    assert mask_seed(5, 2, 1) == mask_seed(5, 2, 1)
    assert 0 <= mask_seed(-1, 0, 0) < 2**63


@pytest.mark.parametrize(("p", "mode"), [(0.3, "element"), (0.5, "channel"), (0.1, "channel")])
def test_keep_fraction_and_scaling(p: float, mode: str) -> None:
    """About 1 − p of the units survive, and survivors are scaled by exactly 1 / (1 − p)."""
    drop = MCDropout(p, mode).eval()
    x = _ones(4, 256, 8, 8)
    with sampling_plan(3, [0, 1, 2, 3]):
        y = drop(x)
    kept = y != 0
    frac = kept.float().mean().item()
    units = 4 * 256 * (64 if mode == "element" else 1)
    tolerance = 4.0 * (p * (1 - p) / units) ** 0.5
    assert abs(frac - (1 - p)) < tolerance
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1.0 / (1.0 - p)))


def test_channel_mode_zeroes_whole_channels() -> None:
    """Channel mode: each (row, channel) map is all kept or all zero; some of each occur."""
    x = torch.rand(3, 32, 5, 7, generator=torch.Generator().manual_seed(1)) + 0.5
    with sampling_plan(0, [0, 1, 2]):
        y = MCDropout(0.5, "channel").eval()(x)
    zero_maps = (y == 0).flatten(2).all(-1)
    nonzero_maps = (y != 0).flatten(2).all(-1)
    assert torch.equal(zero_maps | nonzero_maps, torch.ones_like(zero_maps))
    assert zero_maps.any() and nonzero_maps.any()
    assert torch.allclose(y[nonzero_maps], (x * 2.0)[nonzero_maps])


def test_element_mode_is_not_channelwise() -> None:
    """Element mode drops individual elements: some channel maps are partially zero."""
    x = _ones(1, 8, 6, 6)
    with sampling_plan(0, [0]):
        y = MCDropout(0.5, "element").eval()(x)
    flat = (y == 0).flatten(2)
    partial = flat.any(-1) & ~flat.all(-1)
    assert partial.any()


def test_eval_without_plan_is_identity() -> None:
    """No plan and eval mode: output is the input tensor unchanged."""
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(2))
    for mode in ("channel", "element"):
        assert torch.equal(MCDropout(0.5, mode).eval()(x), x)


def test_zero_rate_with_plan_is_identity() -> None:
    """p = 0 under a plan leaves the input unchanged."""
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(2))
    with sampling_plan(0, [0, 1]):
        assert torch.equal(MCDropout(0.0).eval()(x), x)


@pytest.mark.parametrize("mode", ["channel", "element"])
def test_training_mode_without_plan_is_standard_dropout(mode: str) -> None:
    """Training without a plan drops some units (scaled by 1/(1-p)) and keeps others, like nn.Dropout/Dropout2d."""
    torch.manual_seed(0)
    x = _ones(2, 64, 4, 4)
    y = MCDropout(0.5, mode).train()(x)
    assert (y == 0).any()
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 2.0))
    if mode == "channel":
        per_map = (y == 0).flatten(2)
        assert torch.equal(per_map.all(-1), per_map.any(-1))


def test_plan_is_scoped_to_the_block() -> None:
    """After the with-block the module is the identity again in eval mode."""
    drop = MCDropout(0.9).eval()
    x = _ones(1, 64, 1, 1)
    with sampling_plan(0, [0]):
        inside = drop(x)
    assert (inside == 0).any()
    assert torch.equal(drop(x), x)


def test_batch_not_divisible_by_samples_raises() -> None:
    """A batch of 3 rows cannot hold 2 samples."""
    with sampling_plan(0, [0, 1]), pytest.raises(ValueError, match="does not split"):
        MCDropout(0.5).eval()(_ones(3))


def test_bad_mode_rejected() -> None:
    """Unknown modes are a ValueError naming the allowed ones."""
    with pytest.raises(ValueError, match="channel"):
        MCDropout(0.5, "spatial")


@pytest.mark.parametrize("mode", ["channel", "element"])
def test_rate_one_drops_everything_without_nan(mode: str) -> None:
    """p = 1 under a plan zeroes the input like F.dropout(p=1) instead of producing 0/0 = NaN."""
    x = _ones(2, 4, 3, 3)
    with sampling_plan(0, [0, 1]):
        y = MCDropout(1.0, mode).eval()(x)
    assert torch.equal(y, torch.zeros_like(x))
