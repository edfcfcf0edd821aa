"""The attack (app.engine.adversarial): its gradient against finite differences, the flip-ε map's guarantees, seeding."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from app.engine.adversarial import AttackSettings, attack, loss_and_gradient, project
from app.engine.attack_target import pixel_log_probs
from app.engine.network import SegmentationNet
from app.io.bundle import Bundle

EPSILONS = (1.0, 2.0, 4.0, 8.0)


def smooth_net() -> nn.Module:
    """A tiny smooth float64 network: pixels → log-probabilities of 3 classes."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.Tanh(), nn.Conv2d(5, 3, 1), nn.LogSoftmax(dim=1)).double().eval()
    return net


def scene(size: int = 32, seed: int = 0) -> torch.Tensor:
    """A ``(1, 3, size, size)`` float32 image of smooth colour blobs in [0, 255]."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(1, 3, 4, 4))
    big = torch.nn.functional.interpolate(torch.from_numpy(small), size=(size, size), mode="bilinear", align_corners=False)
    return big.float().clamp(0, 255)


def central_difference(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: torch.Tensor, index: int, h: float) -> float:
    """d(summed NLL of ``target`` under ``f``)/d(x.flat[index]) by central differences."""
    losses = []
    for step in (h, -h):
        moved = x.clone().view(-1)
        moved[index] += step
        with torch.no_grad():
            losses.append(float(torch.nn.functional.nll_loss(f(moved.view_as(x)), target, reduction="sum")))
    return (losses[0] - losses[1]) / (2 * h)


def test_gradient_matches_central_differences_on_a_smooth_net() -> None:
    net = smooth_net()
    x = torch.rand(1, 3, 5, 6, dtype=torch.float64) * 255
    target = net(x).argmax(1)
    _, grad, _ = loss_and_gradient(net, x, target)
    numeric = torch.tensor([central_difference(net, x, target, i, 1e-4) for i in range(x.numel())], dtype=torch.float64).view_as(x)
    torch.testing.assert_close(grad, numeric, rtol=1e-6, atol=1e-9)


def test_gradient_through_the_bundle_network_matches_finite_differences(tiny_bundle: Bundle) -> None:
    net = tiny_bundle.net.double().eval()
    norm = tiny_bundle.card.normalization
    log_probs = pixel_log_probs(net, norm.mean, norm.std)
    x = scene(20).double()  # 20 is not a multiple of the stride: the padding is differentiated too
    target = log_probs(x).argmax(1)
    _, grad, _ = loss_and_gradient(log_probs, x, target)
    rng = np.random.default_rng(1)
    for index in rng.choice(x.numel(), size=12, replace=False):
        numeric = central_difference(log_probs, x, target, int(index), 1e-5)
        assert float(grad.view(-1)[index]) == pytest.approx(numeric, rel=1e-4, abs=1e-7)


def test_no_parameter_gets_a_gradient_and_training_mode_is_refused(tiny_bundle: Bundle) -> None:
    net = tiny_bundle.net.eval()
    norm = tiny_bundle.card.normalization
    attack(pixel_log_probs(net, norm.mean, norm.std), scene(32), AttackSettings((2.0,), steps=1))
    assert all(p.grad is None for p in net.parameters())
    net.train()
    with pytest.raises(ValueError, match="eval"):
        pixel_log_probs(net, norm.mean, norm.std)


def test_flip_epsilon_map_is_monotone_and_witnessed(tiny_bundle: Bundle) -> None:
    net = tiny_bundle.net.eval()
    norm = tiny_bundle.card.normalization
    image = torch.cat([scene(32, 0), scene(32, 1)])
    result = attack(pixel_log_probs(net, norm.mean, norm.std), image, AttackSettings(EPSILONS, steps=3, seed=5))
    flip = result.flip_epsilon
    assert flip.shape == (2, 32, 32)
    assert set(torch.unique(flip).tolist()) <= {*EPSILONS, float("inf")}
    assert torch.isfinite(flip).any(), "the attack flips nothing on the tiny model: the test would prove nothing"
    for k, eps in enumerate(EPSILONS):
        delta = result.perturbed[k] - image
        assert float(delta.abs().max()) <= eps + 1e-4  # inside the ball
        assert float(result.perturbed[k].min()) >= 0 and float(result.perturbed[k].max()) <= 255  # and the box
        flipped = result.predictions[k] != result.clean
        assert bool((flip[flipped] <= eps).all()), "a pixel the kept image flips at eps must have flip-eps <= eps"
        torch.testing.assert_close(result.flip_share[k], flipped.flatten(1).float().mean(1))
        torch.testing.assert_close(result.flippable_share[k], (flip <= eps).flatten(1).float().mean(1))
        assert bool((result.flip_share[k] <= result.flippable_share[k] + 1e-7).all())
        with torch.no_grad():
            again = pixel_log_probs(net, norm.mean, norm.std)(result.perturbed[k]).argmax(1)
        assert torch.equal(again, result.predictions[k])  # the reported prediction is the perturbed image's
    # both shares grow with eps: the map by its definition, the kept image by the warm start
    assert bool((result.flippable_share.diff(dim=0) >= 0).all())
    assert bool((result.flip_share.diff(dim=0) >= 0).all())


def test_a_shorter_list_gives_the_same_map_where_it_reaches(tiny_bundle: Bundle) -> None:
    net = tiny_bundle.net.eval()
    norm = tiny_bundle.card.normalization
    log_probs = pixel_log_probs(net, norm.mean, norm.std)
    full = attack(log_probs, scene(32), AttackSettings(EPSILONS, seed=3))
    short = attack(log_probs, scene(32), AttackSettings(EPSILONS[:2], seed=3))
    clipped = torch.where(full.flip_epsilon <= EPSILONS[1], full.flip_epsilon, torch.full_like(full.flip_epsilon, float("inf")))
    assert torch.equal(short.flip_epsilon, clipped)


def test_same_seed_same_attack_other_seed_other_start(tiny_bundle: Bundle) -> None:
    net = tiny_bundle.net.eval()
    norm = tiny_bundle.card.normalization
    log_probs = pixel_log_probs(net, norm.mean, norm.std)
    a = attack(log_probs, scene(32), AttackSettings(EPSILONS[:2], seed=7))
    b = attack(log_probs, scene(32), AttackSettings(EPSILONS[:2], seed=7))
    c = attack(log_probs, scene(32), AttackSettings(EPSILONS[:2], seed=8))
    assert torch.equal(a.flip_epsilon, b.flip_epsilon) and torch.equal(a.perturbed, b.perturbed)
    assert not torch.equal(a.perturbed, c.perturbed)


def test_projection_keeps_ball_and_box() -> None:
    image = torch.tensor([[0.0, 128.0, 255.0]])
    delta = torch.tensor([[-9.0, 9.0, 9.0]])
    assert project(delta, image, 4.0).tolist() == [[0.0, 4.0, 0.0]]


@pytest.mark.parametrize("epsilons", [(), (2.0, 1.0), (0.0,), (1.0, 1.0), (300.0,)])
def test_bad_radii_are_refused(epsilons: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        AttackSettings(epsilons)


def test_radii_parse_from_text_and_the_request_checks_them() -> None:
    from app.request import AnalysisRequest, parse_epsilons

    assert parse_epsilons("8, 2/255,1,2") == (1.0, 2.0, 8.0)
    assert parse_epsilons("") == ()
    for text in ("1,a", "2/256"):
        with pytest.raises(ValueError, match="adversarial radius"):
            parse_epsilons(text)
    for options in ({"adversarial": (0.0,)}, {"adversarial": (2.0, 1.0)}, {"adversarial": tuple(range(1, 10))}, {"adversarial_steps": 99}):
        with pytest.raises(ValueError, match="adversarial"):
            AnalysisRequest(**options)


def test_the_mc_target_is_the_analysis_mc_mean_and_its_gradient_is_right(tiny_bundle: Bundle) -> None:
    from app.engine.attack_target import mc_log_probs
    from app.request import AnalysisRequest
    from app.workflows.analyzer import Analyzer

    analyzer = Analyzer(tiny_bundle)
    image = scene(32)
    rgb = image[0].permute(1, 2, 0).round().to(torch.uint8).numpy()
    analysis = analyzer.analyze_image(rgb, AnalysisRequest(samples=4, seed=3))
    norm = tiny_bundle.card.normalization
    log_probs = mc_log_probs(tiny_bundle.net, norm.mean, norm.std, samples=4, seed=3)
    with torch.no_grad():
        mean = log_probs(torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float()).exp()[0].numpy()
    np.testing.assert_allclose(mean, analysis.mean_probs, atol=1e-5)  # the same masks as the analysis with this seed
    net64 = load_bundle_copy(tiny_bundle)
    f = mc_log_probs(net64, norm.mean, norm.std, samples=3, seed=1)
    x = scene(12).double()
    target = f(x).argmax(1)
    _, grad, _ = loss_and_gradient(f, x, target)
    for index in (5, 100, 301):
        numeric = central_difference(f, x, target, index, 1e-5)
        assert float(grad.view(-1)[index]) == pytest.approx(numeric, rel=1e-4, abs=1e-7)


def load_bundle_copy(bundle: Bundle) -> SegmentationNet:
    """A float64 copy of the bundle's network in eval mode."""
    import copy

    net = copy.deepcopy(bundle.net)
    net.double().eval()
    return net
