"""Seeded MC-dropout masks: determinism, independence from chunking, rates and scaling."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from app.engine.dropout import MASK_SCHEMES, MCDropout, mask_seed, sampling_plan
from app.engine.dropout_masks import block_length, image_seed
from app.io.bundle import load_bundle


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


@pytest.mark.parametrize("scheme", MASK_SCHEMES)
def test_masks_depend_on_seed_sample_and_site_only(scheme: str) -> None:
    """Same (seed, sample, site) → same mask however much global RNG state was used in between; any change → another mask.

    The global RNG is consumed, never re-seeded, between the draws: masks drawn from it would differ.
    """
    x = _ones(1, 64, 1, 1)

    def draw(seed: int, sample: int, site: int) -> torch.Tensor:
        with sampling_plan(seed, [sample], scheme):
            return MCDropout(0.5, "channel", site=site).eval()(x)

    base = draw(1, 0, 0)
    torch.rand(1000)
    np.random.default_rng().random(10)
    assert torch.equal(base, draw(1, 0, 0))
    assert torch.equal(draw(1, 3, 2), draw(1, 3, 2))
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


@pytest.mark.parametrize("scheme", MASK_SCHEMES)
@pytest.mark.parametrize("mode", ["channel", "element"])
def test_drop_rate_is_exact_enough_to_tell_0_2_from_0_23(scheme: str, mode: str) -> None:
    """Over 100 000 units (samples × sites × images × channels) the dropped fraction is 0.2 within 5 binomial sd (0.006)."""
    samples, sites, images, channels = 200, 4, 2, 64 if mode == "channel" else 8
    x = _ones(images, channels, 1 if mode == "channel" else 2, 1 if mode == "channel" else 4)
    dropped = total = 0
    for site in range(sites):
        with sampling_plan(5, range(samples), scheme):
            y = MCDropout(0.2, mode, site=site).eval()(x.repeat(samples, 1, 1, 1))
        dropped += int((y == 0).sum())
        total += y.numel()
    tolerance = 5 * math.sqrt(0.2 * 0.8 / total)
    assert total >= 100_000 and tolerance < 0.01
    assert abs(dropped / total - 0.2) < tolerance


def test_shipped_model_drops_head_channels_at_its_card_rate() -> None:
    """The default model's head input under a plan: 20 % of its 16 channels zeroed, the rest scaled by exactly 1 / 0.8."""
    bundle = load_bundle("default")
    net, rate, samples = bundle.net, bundle.card.dropout.rate, 400
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    seen: list[torch.Tensor] = []
    head = net.model.get_submodule("segmentation_head")
    hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))  # runs after the dropout hook
    try:
        with torch.no_grad():
            decoded = net.prefix(x)
            with sampling_plan(1, range(samples)):
                head(decoded.repeat(samples, 1, 1, 1))
    finally:
        hook.remove()
    out, ref = seen[0].view(samples, *decoded.shape[1:]), decoded[0]
    live = ref.flatten(1).abs().amax(1) > 0
    kept = torch.isclose(out, ref / (1 - rate), rtol=1e-5, atol=1e-6).flatten(2).all(-1)
    zero = (out == 0).flatten(2).all(-1)
    assert bool((kept | zero)[:, live].all())
    units = samples * int(live.sum())
    assert rate == 0.2 and units >= 6_000
    assert abs(float(zero[:, live].float().mean()) - rate) < 5 * math.sqrt(rate * (1 - rate) / units)


@pytest.mark.parametrize(("rate", "length"), [(0.2, 5), (0.3, 10), (0.25, 4), (0.5, 2), (0.123, 20), (1 / 3, 3)])
def test_stratified_blocks_drop_each_unit_floor_or_ceil_of_rate_times_length(rate: float, length: int) -> None:
    """In each block of L samples every unit is dropped ⌊rate·L⌋ or ⌈rate·L⌉ times, at positions that vary per unit."""
    assert block_length(rate) == length
    units = 4_000
    with sampling_plan(3, range(2 * length), "stratified"):
        y = MCDropout(rate, "channel").eval()(_ones(1, units, 1, 1).repeat(2 * length, 1, 1, 1))
    drops = (y == 0).view(2, length, units).sum(1)
    low = math.floor(rate * length + 1e-9)
    assert set(drops.unique().tolist()) <= {low, low + 1}
    assert abs(float(drops.float().mean()) - rate * length) < 5 * math.sqrt(0.25 / (2 * units))
    first = (y == 0).view(2, length, units)[0]
    assert len({tuple(col.tolist()) for col in first.T}) > 1


def test_image_seeds_are_stable_distinct_and_in_the_api_range() -> None:
    """image_seed is a pure function of (run seed, name) into [0, 2^32), different for other names and run seeds."""
    seeds = {image_seed(s, f"{i:05d}.png") for s in range(3) for i in range(200)}
    assert len(seeds) == 600 and all(0 <= v < 2**32 for v in seeds)
    assert image_seed(0, "a.png") == image_seed(0, "a.png") == 1395031409  # fixed across processes and platforms


# A hand-made head: 6 channels of features → 1x1 convolution → 3-class softmax, small enough to enumerate every mask.
_K, _C = 6, 3


def _head() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    return (
        torch.randn(1, _K, 3, 3, generator=gen, dtype=torch.float64),
        1.5 * torch.randn(_C, _K, generator=gen, dtype=torch.float64),
        torch.randn(_C, 1, 1, generator=gen, dtype=torch.float64),
    )


def _probs(feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.softmax(torch.einsum("ck,nkhw->nchw", weight, feats) + bias, dim=1)


def _exact_moments(rate: float, length: int, samples: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """By enumerating all 2^6 masks (and pairs of masks in one block): E[p], the true variance, E[stratified pop. variance]."""
    feats, weight, bias = _head()
    keeps = torch.tensor(list(itertools.product([0.0, 1.0], repeat=_K)), dtype=torch.float64)
    prob = torch.prod(keeps * (1 - rate) + (1 - keeps) * rate, dim=1)
    p = _probs(feats * keeps.view(-1, _K, 1, 1) / (1 - rate), weight, bias)
    mean = torch.einsum("m,mchw->chw", prob, p)
    var = torch.einsum("m,mchw->chw", prob, p**2) - mean**2
    low = math.floor(rate * length + 1e-9)
    ks = {low: 1 - (rate * length - low), low + 1: rate * length - low}
    pairs = length * (length - 1)
    both = sum(w * k * (k - 1) for k, w in ks.items()) / pairs
    one = sum(w * k * (length - k) for k, w in ks.items()) / pairs
    joint = torch.tensor([[both, one], [one, 1 - both - 2 * one]], dtype=torch.float64)  # [keep in sample s, keep in sample t]
    index = keeps.long()
    pair_prob = joint[index[:, None, :], index[None, :, :]].prod(-1)
    cov = torch.einsum("ab,achw,bchw->chw", pair_prob, p, p) - mean**2
    full, rest = divmod(samples, length)
    same_block_pairs = full * length * (length - 1) + rest * (rest - 1)
    expected_var = var - var / samples - same_block_pairs * cov / samples**2
    return mean, var, expected_var


def _estimates(rate: float, samples: int, scheme: str, runs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """p̄ and the population variance over ``samples`` MC samples, for seeds 0..runs-1: ``(runs, C, H, W)`` each."""
    feats, weight, bias = _head()
    drop = MCDropout(rate, "channel").eval()
    means, variances = [], []
    for seed in range(runs):
        with sampling_plan(seed, range(samples), scheme):
            p = _probs(drop(feats.repeat(samples, 1, 1, 1)), weight, bias)
        means.append(p.mean(0))
        variances.append(p.var(0, unbiased=False))
    return torch.stack(means), torch.stack(variances)


def _max_z(estimates: torch.Tensor, target: torch.Tensor) -> float:
    se = estimates.std(0) / math.sqrt(estimates.shape[0])
    return float(((estimates.mean(0) - target).abs() / se.clamp(min=1e-12)).max())


@pytest.mark.parametrize(("rate", "samples"), [(0.3, 13), (0.123, 25)])
def test_stratified_estimates_are_unbiased_against_exact_enumeration(rate: float, samples: int) -> None:
    """Averaged over 3000 seeds, stratified p̄ → E[p] and its population variance → σ² − Var(p̄), both from the 2^6 masks.

    For i.i.d. masks E[pop. variance] = (T − 1)/T · σ². Stratified samples of one block are negatively correlated
    (covariance c of two samples in one block), so Var(p̄) = σ²/T + n_pairs · c / T² with n_pairs the ordered pairs of
    samples sharing a block, and E[pop. variance] = σ² − Var(p̄): closer to σ² than the i.i.d. value.
    """
    length = block_length(rate)
    mean, var, expected_var = _exact_moments(rate, length, samples)
    means, variances = _estimates(rate, samples, "stratified", runs=3000)
    assert _max_z(means, mean) < 5
    assert _max_z(variances, expected_var) < 5
    assert _max_z(variances, var * (samples - 1) / samples) > 6  # the i.i.d. value would fail: the test tells them apart
    assert float(var.max()) > 1e-3


def test_iid_estimates_are_unbiased_with_the_textbook_variance_factor() -> None:
    """I.i.d. masks: E[p̄] = E[p] and E[pop. variance] = (T − 1)/T · σ², from the same enumeration."""
    mean, var, _ = _exact_moments(0.3, 10, 13)
    means, variances = _estimates(0.3, 13, "iid", runs=3000)
    assert _max_z(means, mean) < 5
    assert _max_z(variances, var * 12 / 13) < 5


def test_stratified_masks_reduce_seed_to_seed_noise() -> None:
    """At T = 20 the seed-to-seed sd of p̄ on the linear head is well below that of i.i.d. masks."""
    strat, _ = _estimates(0.2, 20, "stratified", runs=400)
    iid, _ = _estimates(0.2, 20, "iid", runs=400)
    assert float(strat.std(0).mean()) < 0.5 * float(iid.std(0).mean())
