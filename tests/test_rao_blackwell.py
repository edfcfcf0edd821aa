"""The Rao–Blackwellised estimator against exact enumeration of every head mask, and its bias correction on a known case."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from app.engine.augment import Augmentation
from app.engine.dropout import MCDropout
from app.engine.factorised_head import FactorisedHead
from app.engine.network import SegmentationNet
from app.engine.samplers import RaoBlackwellTail, TiledTail, choose_sampler
from app.engine.sampling import SamplingOptions, run_mc
from app.io.bundle import Bundle
from app.maps.functions import entropy
from app.maps.rao_blackwell import Branches, branch_moments, enumeration, rao_blackwell_draws, select_channels
from app.maps.rb_finalize import GroupSums, finalize_block
from app.maps.registry import SAMPLED_MAPS


def exact_moments(net: SegmentationNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``E p``, ``E p²`` ``(C, H, W)`` and ``E H[p]`` ``(H, W)`` of image 0 over all ``2^K`` head masks, in float64."""
    dropout = net.dropouts[0]
    assert isinstance(dropout, MCDropout)
    keep = 1.0 - float(dropout.p)
    with torch.inference_mode():
        decoded = net.prefix(x)
        head = FactorisedHead(net, decoded)
        k = decoded.shape[1]
        masks, weights = _all_masks(k, keep)
        parts = head.parts[0].view(k, head.classes, -1).double()
        bias = head.bias.view(-1, 1).double() if head.bias is not None else 0.0
        p = torch.softmax(torch.einsum("mk,kcn->mcn", masks.double(), parts) + bias, dim=1)
        w = weights.double().view(-1, 1, 1)
        shape = (head.classes, *head.out_shape)
        return (w * p).sum(0).view(shape), (w * p * p).sum(0).view(shape), (w[:, 0] * torch.special.entr(p).sum(1)).sum(0).view(shape[1:])


def exact_maps(net: SegmentationNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The exact maps of image 0 (float64): the definitions applied to the exact moments."""
    mean, second, expected = exact_moments(net, x)
    total = entropy(mean.unsqueeze(0))[0]
    top = mean.argmax(0, keepdim=True)
    variance = (second.gather(0, top) - mean.gather(0, top) ** 2)[0]
    return {"mean_probs": mean, "entropy": total, "expected_entropy": expected, "mutual_information": total - expected, "variance": variance}


def _all_masks(k: int, keep: float) -> tuple[torch.Tensor, torch.Tensor]:
    keeps = torch.tensor(list(itertools.product([0.0, 1.0], repeat=k)))
    return keeps / keep, torch.prod(keeps * keep + (1 - keeps) * (1 - keep), dim=1)


@pytest.mark.parametrize(("enumerated", "temperature"), [(0, 1.0), (2, 1.0), (3, 1.7), (6, 1.0)])
def test_draws_average_over_all_masks_to_the_exact_moments(enumerated: int, temperature: float) -> None:
    """Weighting every possible draw by its mask's probability gives E p, E p² and E H[p] of plain dropout exactly."""
    gen = torch.Generator().manual_seed(0)
    k, c, n, keep = 6, 3, 40, 0.7
    parts = torch.randn(1, k, c, n, generator=gen) * 3
    bias = torch.randn(c, generator=gen)
    masks, weights = _all_masks(k, keep)
    logits = (torch.einsum("mk,kcn->mcn", masks, parts[0]) + bias.view(1, c, 1)) / temperature
    p = torch.softmax(logits.double(), dim=1)
    w = weights.double().view(-1, 1, 1)
    draws = rao_blackwell_draws(Branches(parts, select_channels(parts, enumerated), keep, temperature), bias, masks.unsqueeze(0))
    assert torch.allclose((w * draws.p[0].double()).sum(0), (w * p).sum(0), atol=1e-6)
    assert torch.allclose((w * draws.q[0].double()).sum(0), (w * p * p).sum(0), atol=1e-6)
    assert torch.allclose((w[:, 0] * draws.h[0].double()).sum(0), (w[:, 0] * torch.special.entr(p).sum(1)).sum(0), atol=1e-5)


def test_enumeration_patterns_and_weights() -> None:
    patterns, weights = enumeration(2, 0.8, torch.device("cpu"))
    assert patterns.tolist() == [[0.0, 0.0], [0.0, 1.25], [1.25, 0.0], [1.25, 1.25]]
    assert weights.tolist() == pytest.approx([0.04, 0.16, 0.16, 0.64])
    with pytest.raises(ValueError):
        enumeration(1, 0.0, torch.device("cpu"))


def test_enumerating_every_channel_is_exact_whatever_the_seed(tiny_bundle: Bundle) -> None:
    """With k = K every draw is the exact expectation: the maps equal those of all 2^K masks, for any seed."""
    net = tiny_bundle.net
    x = torch.randn(1, 3, 16, 24, generator=torch.Generator().manual_seed(1))
    exact = exact_maps(net, x)
    for seed in (0, 5):
        maps = run_mc(net, x, SamplingOptions(samples=3 * 2**8, seed=seed, estimator="rao_blackwellised", enumerated=8))
        assert maps.estimator == "rao_blackwellised" and maps.enumerated == 8
        assert torch.allclose(maps.mean_probs[0].double(), exact["mean_probs"], atol=2e-6)
        for name in ("entropy", "expected_entropy", "mutual_information", "variance"):
            assert torch.allclose(maps.scalar_maps()[name][0].double(), exact[name], atol=2e-5), name
        assert maps.replicates is not None
        assert all(float(maps.replicates[name].std(dim=1).max()) < 1e-5 for name in SAMPLED_MAPS)


def test_the_mean_over_seeds_is_the_exact_expectation(tiny_bundle: Bundle) -> None:
    """k < K: p̄ and the expected entropy, averaged over seeds, meet E p and E H[p] within 5 standard errors of that average."""
    net = tiny_bundle.net
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    mean_p, _, mean_h = exact_moments(net, x)
    runs = [run_mc(net, x, SamplingOptions(samples=16, seed=s, estimator="rao_blackwellised", enumerated=2)) for s in range(60)]
    p = torch.stack([r.mean_probs[0].double().mean((1, 2)) for r in runs])
    h = torch.stack([r.expected_entropy[0].double().mean() for r in runs])
    assert float(p.std(0).max()) > 1e-4  # the draws are random: the test has something to average
    se_p, se_h = p.std(0) / math.sqrt(len(runs)), h.std() / math.sqrt(len(runs))
    assert ((p.mean(0) - mean_p.mean((1, 2))).abs() <= 5 * se_p + 1e-7).all()
    assert abs(float(h.mean() - mean_h.mean())) <= 5 * float(se_h) + 1e-7


def test_bias_correction_removes_the_plug_in_bias_of_a_known_case() -> None:
    """Draws P_t = (u, 1-u), u = 0.1 or 0.5 with probability ½: E p = (0.3, 0.7), H(E p) = 0.6109 and Var(p₀) = 0.04.

    The plug-in entropy of the mean of T = 20 draws is low by about ½ Σ Var(P̄_c)/p_c = 0.0048; the corrected one is not
    (4000 replications: standard error 0.0006), and the corrected variance is unbiased (the plug-in one is low by 0.002).
    """
    gen = torch.Generator().manual_seed(0)
    reps, t, groups = 4000, 20, 10
    u = torch.where(torch.rand(reps, t, generator=gen) < 0.5, 0.1, 0.5)
    p = torch.stack([u, 1 - u]).permute(2, 0, 1).unsqueeze(0)  # (1, T, C, n): the n = reps pixels are the replications
    sums = GroupSums([t // groups] * groups, 1, 2, reps, torch.device("cpu"))
    for g in range(groups):
        block = p[:, 2 * g : 2 * g + 2]
        sums.add(2 * g, block, block * block, torch.zeros(1, 2, reps))
    out = {name: torch.empty(1, 2, reps) for name in ("mean_probs", "class_variance")}
    out.update({name: torch.empty(1, reps) for name in ("entropy", "expected_entropy", "mutual_information", "variance")})
    out["prediction"] = torch.empty(1, reps, dtype=torch.int64)
    finalize_block(sums, out, None)
    plug_in = torch.special.entr(out["mean_probs"].double()).sum(1)
    se = float(out["entropy"].double().std()) / math.sqrt(reps)
    truth = -(0.3 * math.log(0.3) + 0.7 * math.log(0.7))
    assert float(plug_in.mean()) < truth - 0.0035
    assert abs(float(out["entropy"].double().mean()) - truth) < 4 * se
    plug_in_variance = (out["class_variance"][0, 0].double() - 0.0).mean()
    assert abs(float(plug_in_variance) - 0.04) < 0.0007


def test_group_sums_put_each_draw_in_its_group_whatever_the_chunks() -> None:
    """Draws added in uneven chunks land in the groups of ``sample_groups`` (sizes 3, 3, 4 for T = 10, G = 3)."""
    gen = torch.Generator().manual_seed(3)
    p, h = torch.rand(1, 10, 2, 5, generator=gen), torch.rand(1, 10, 5, generator=gen)
    sums = GroupSums([3, 3, 4], 1, 2, 5, torch.device("cpu"))
    for s0, s1 in ((0, 4), (4, 5), (5, 10)):
        sums.add(s0, p[:, s0:s1], 2 * p[:, s0:s1], h[:, s0:s1])
    for g, (lo, hi) in enumerate(((0, 3), (3, 6), (6, 10))):
        torch.testing.assert_close(sums.p[g], p[:, lo:hi].sum(1))
        torch.testing.assert_close(sums.q[g], 2 * p[:, lo:hi].sum(1))
        torch.testing.assert_close(sums.h[g], h[:, lo:hi].sum(1))


def test_select_channels_picks_the_drops_that_move_the_softmax_not_the_widest_range() -> None:
    """Pixel of logits (4.5, -0.4, -12): channel 0 spans 12 nats, but between two unlikely classes (dropping it leaves
    class 0 at p = 0.94), while dropping channel 1 (range 4) takes class 0 from 0.99 to 0.71.

    The chosen channels are checked against a NumPy reference of the L1 softmax change.
    """
    import numpy as np

    a = torch.zeros(1, 4, 3, 1)
    a[0, 0, :, 0] = torch.tensor([0.0, -2.0, -12.0])
    a[0, 1, :, 0] = torch.tensor([4.0, 0.0, 0.0])
    a[0, 2, :, 0] = torch.tensor([0.5, 0.0, 0.0])
    a[0, 3, :, 0] = torch.tensor([0.0, 1.6, 0.0])
    bias = torch.tensor([0.0, 0.0, 0.0])
    logits = a[0, :, :, 0].numpy().sum(0) + bias.numpy()

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max())
        return e / e.sum()

    effect = [np.abs(softmax(logits - a[0, k, :, 0].numpy()) - softmax(logits)).sum() for k in range(4)]
    for k in (1, 2, 3):
        assert select_channels(a, k, bias).flatten().tolist() == list(np.argsort(effect)[::-1][:k])
    assert select_channels(a, 1, bias).item() == 1
    widest = (a.amax(2) - a.amin(2)).flatten().argmax().item()
    assert widest == 0


def test_auto_picks_rao_blackwell_for_one_plain_pass_only(tiny_bundle: Bundle) -> None:
    net = tiny_bundle.net
    auto = SamplingOptions(samples=6, estimator="auto", enumerated=1)
    assert isinstance(choose_sampler(net, Augmentation(), auto), RaoBlackwellTail)
    assert isinstance(choose_sampler(net, Augmentation(flip_h=True), auto), TiledTail)
    assert isinstance(choose_sampler(net, Augmentation(), SamplingOptions(samples=1, estimator="auto")), TiledTail)
    # fewer than three draws of 2^k branches leave no jackknife: auto samples instead; asked for by name, it still runs
    assert isinstance(choose_sampler(net, Augmentation(), SamplingOptions(samples=5, estimator="auto", enumerated=1)), TiledTail)
    assert isinstance(choose_sampler(net, Augmentation(), SamplingOptions(samples=5, estimator="rao_blackwellised", enumerated=1)), RaoBlackwellTail)
    assert isinstance(choose_sampler(net, Augmentation(), SamplingOptions(samples=4)), TiledTail)
    with pytest.raises(ValueError, match="estimator"):
        SamplingOptions(estimator="bogus")  # type: ignore[arg-type]


def _branch_reference(z: torch.Tensor, log_s: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
    branch = torch.softmax(z.double().unsqueeze(2) + log_s.double().unsqueeze(1), dim=3)
    w = weights.double().view(1, 1, -1, 1, 1)
    return (w * branch).sum(2), (w * branch.square()).sum(2), (w * torch.special.entr(branch)).sum(3).sum(2)


def test_branch_moments_hold_where_draw_and_branch_logits_span_far_more_than_40_nats() -> None:
    """Draw logits (100, 0, 0) and branch offsets (0, 60, 0) or (0, 44, 0): probabilities (1, 4e-18) and (0.73, 0.27)."""
    z = torch.tensor([[100.0, 0.0, 0.0], [45.0, 0.0, 0.0]]).T.reshape(1, 1, 3, 2)
    log_s = torch.tensor([[[0.0, 60.0, 0.0], [0.0, 44.0, 0.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]).permute(0, 2, 1).unsqueeze(0)
    weights = torch.tensor([0.5, 0.5])
    for got, ref in zip(branch_moments(z, log_s, weights), _branch_reference(z, log_s, weights), strict=True):
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-6)


def test_no_dropout_gives_finite_maps_equal_to_the_deterministic_softmax() -> None:
    """keep = 1: every branch but the all-kept one has weight 0 (0/0 must not appear)."""
    gen = torch.Generator().manual_seed(5)
    parts, bias = torch.randn(1, 6, 4, 30, generator=gen), torch.randn(4, generator=gen)
    branches = Branches(parts, select_channels(parts, 3, bias), keep=1.0)
    draws = rao_blackwell_draws(branches, bias, torch.ones(1, 5, 6))
    p = torch.softmax(parts.sum(1) + bias.view(1, 4, 1), dim=1)
    assert all(bool(torch.isfinite(t).all()) for t in (draws.p, draws.q, draws.h))
    torch.testing.assert_close(draws.p, p.unsqueeze(1).expand_as(draws.p), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(draws.q, p.square().unsqueeze(1).expand_as(draws.q), rtol=1e-5, atol=1e-6)
