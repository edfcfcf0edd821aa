"""Honest error bars: mean ± 1.96 reported SE of the Rao–Blackwellised image means covers the exact value 90-98 % of the time.

The exact values come from all 2^8 head masks of the tiny model and all 2^16 of the shipped one. The same intervals
with the reported error doubled or halved leave the band, and on the shipped model so does leaving the jackknife's
bias correction out (on the tiny model that bias is too small for coverage to see).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from test_rao_blackwell import exact_maps

from app.defaults import DEFAULT_SAMPLES
from app.engine import rb_head
from app.engine.dropout import MCDropout
from app.engine.factorised_head import FactorisedHead
from app.engine.geometry import to_tensor
from app.engine.network import SegmentationNet
from app.engine.sampling import SamplingOptions, run_mc
from app.io.bundle import Bundle, load_bundle
from app.io.synthetic import make_scene
from app.maps.mc_error import jackknife_se

MAPS = ("mutual_information", "variance", "entropy")
SEEDS = 60


def _trials(bundle: Bundle, estimator: str, samples: int = 20, enumerated: int = 1) -> list[dict[str, tuple[float, float, float]]]:
    """Per analysis and map: (estimate, reported SE, exact value)."""
    trials = []
    for image in range(3):
        x = torch.randn(1, 3, 16, 24, generator=torch.Generator().manual_seed(100 + image)) * 1.5
        exact = {name: float(v.mean()) for name, v in exact_maps(bundle.net, x).items()}
        for seed in range(SEEDS):
            options = SamplingOptions(samples=samples, seed=seed, estimator=estimator, enumerated=enumerated)  # type: ignore[arg-type]
            maps = run_mc(bundle.net, x, options)
            assert maps.replicates is not None and maps.estimator == estimator
            row = {}
            for name in MAPS:
                se = jackknife_se(maps.replicates[name][0].double().mean((1, 2)).numpy())
                row[name] = (float(maps.scalar_maps()[name].double().mean()), se, exact[name])
            trials.append(row)
    return trials


def _coverage(trials: list[dict[str, tuple[float, float, float]]], name: str, scale: float = 1.0) -> float:
    return float(np.mean([abs(t[name][0] - t[name][2]) <= 1.96 * scale * t[name][1] for t in trials]))


@pytest.mark.slow
def test_intervals_cover_the_exact_value_90_to_98_percent_and_faults_leave_the_band(tiny_bundle: Bundle) -> None:
    trials = _trials(tiny_bundle, "rao_blackwellised")
    for name in MAPS:
        assert 0.90 <= _coverage(trials, name) <= 0.98, (name, _coverage(trials, name))
        assert _coverage(trials, name, scale=2.0) > 0.98, name
        assert _coverage(trials, name, scale=0.5) < 0.90, name


def _exact_image_means(net: SegmentationNet, x: torch.Tensor, chunk: int = 1024) -> dict[str, float]:
    """Image means of the exact maps of a factorised head: every one of its 2^K masks, weighted by its probability."""
    dropout = net.dropouts[0]
    assert isinstance(dropout, MCDropout)
    keep = 1.0 - float(dropout.p)
    with torch.inference_mode():
        head = FactorisedHead(net, net.prefix(x))
        k, c = head.decoded_shape[1], head.classes
        parts = head.parts[0].view(k, c, -1)
        bias = head.bias.view(1, c, 1) if head.bias is not None else 0.0
        n = parts.shape[-1]
        sums = [torch.zeros(c, n, dtype=torch.float64), torch.zeros(c, n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)]
        keeps = torch.tensor(list(itertools.product([0.0, 1.0], repeat=k)))
        weights = torch.prod(keeps.double() * keep + (1.0 - keeps.double()) * (1.0 - keep), dim=1)
        for start in range(0, keeps.shape[0], chunk):
            w = weights[start : start + chunk].float()
            p = torch.softmax(torch.einsum("mk,kcn->mcn", keeps[start : start + chunk] / keep, parts) + bias, dim=1)
            sums[0] += torch.einsum("m,mcn->cn", w, p).double()
            sums[1] += torch.einsum("m,mcn->cn", w, p * p).double()
            sums[2] += (w @ torch.special.entr(p).sum(1)).double()
    mean, second, expected = sums
    total = torch.special.entr(mean).sum(0)
    top = mean.argmax(0, keepdim=True)
    variance = (second.gather(0, top) - mean.gather(0, top) ** 2)[0]
    return {"mutual_information": float((total - expected).mean()), "variance": float(variance.mean()), "entropy": float(total.mean())}


def _default_trials(monkeypatch: pytest.MonkeyPatch | None = None) -> list[dict[str, tuple[float, float, float]]]:
    bundle = load_bundle("default")
    norm = bundle.card.normalization
    trials = []
    for kind, index in (("test", 0), ("test", 1), ("ood", 0)):
        x = to_tensor(make_scene(kind, index, size=64, seed=0).image, norm.mean, norm.std)
        exact = _EXACT.setdefault((kind, index), _exact_image_means(bundle.net, x))
        for seed in range(40):
            maps = run_mc(bundle.net, x, SamplingOptions(samples=DEFAULT_SAMPLES, seed=seed, estimator="auto"))
            assert maps.replicates is not None and maps.estimator == "rao_blackwellised"
            trials.append(
                {
                    name: (float(maps.scalar_maps()[name].double().mean()), jackknife_se(maps.replicates[name][0].double().mean((1, 2)).numpy()), exact[name])
                    for name in MAPS
                }
            )
    return trials


_EXACT: dict[tuple[str, int], dict[str, float]] = {}


@pytest.mark.slow
def test_default_model_intervals_cover_the_exact_value_and_the_bias_left_in_leaves_the_band(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped model at its default settings, three 64² scenes × 40 seeds against all 2^16 head masks: mean ± 1.96
    reported SE covers the exact image mean 90-98 % of the time (measured 0.94, 0.94, 0.94); doubled > 0.98, halved
    < 0.90. Without the jackknife's bias correction (the second-order term alone) the MI interval covers 22 %."""
    trials = _default_trials()
    for name in MAPS:
        assert 0.90 <= _coverage(trials, name) <= 0.98, (name, _coverage(trials, name))
        assert _coverage(trials, name, scale=2.0) > 0.98, name
        assert _coverage(trials, name, scale=0.5) < 0.90, name

    def second_order_only(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p, q, h, sizes, widen = args[:5]
        out = rb_head.FINALIZE_KERNEL(p.transpose(0, 1), q.transpose(0, 1), h.transpose(0, 1), sizes, widen, True)
        return (*out[:7], out[7].transpose(1, 2))

    monkeypatch.setattr(rb_head, "JACKKNIFE_KERNEL", second_order_only)
    assert _coverage(_default_trials(), "mutual_information") < 0.6
