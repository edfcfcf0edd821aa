"""The pass runner: the options' prefix runner is honoured for one pass and refused (never ignored) otherwise."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from app.engine.ensemble import EnsembleNet
from app.engine.passes import run_passes
from app.engine.sampling import SamplingOptions, run_mc
from app.io.bundle import Bundle

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _x(seed: int) -> torch.Tensor:
    return torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("samples", [0, 4])
@pytest.mark.parametrize("factorise", [True, False], ids=["tiled-head", "chunked-tail"])
def test_the_prefix_runner_is_what_the_samples_are_drawn_from(tiny_bundle: Bundle, samples: int, factorise: bool) -> None:
    """A runner that returns another image's prefix gives that image's maps: its output is used, once, in place of net.prefix."""
    net, x, other = tiny_bundle.net, _x(0), _x(1)
    calls: list[torch.Tensor] = []

    def runner(given: torch.Tensor) -> Any:
        calls.append(given)
        return net.prefix(other)

    options = SamplingOptions(samples=samples, seed=5, factorise=factorise)
    maps = run_mc(net, x, SamplingOptions(samples=samples, seed=5, factorise=factorise, prefix_runner=runner))
    assert len(calls) == 1 and torch.equal(calls[0], x)
    want, plain = run_mc(net, other, options), run_mc(net, x, options)
    for name, value in maps.scalar_maps().items():
        assert torch.equal(value, want.scalar_maps()[name]), name
    assert not torch.equal(maps.probs, plain.probs)


def test_a_prefix_runner_is_refused_where_it_cannot_stand_for_the_prefix(tiny_bundle: Bundle) -> None:
    """Several passes (tta, ensembles) run several prefixes; full passes run none: the runner is refused, not ignored."""
    net = tiny_bundle.net

    def runner(given: torch.Tensor) -> Any:
        raise AssertionError("must not run")

    with pytest.raises(ValueError, match=r"prefix_runner.*4 passes"):
        run_passes(net, _x(0), SamplingOptions(samples=2, tta="flips", prefix_runner=runner), MEAN, STD)
    with pytest.raises(ValueError, match=r"prefix_runner.*2 passes"):
        run_passes(EnsembleNet([net, net]).eval(), _x(0), SamplingOptions(samples=0, prefix_runner=runner))
    with pytest.raises(ValueError, match=r"prefix_runner.*strategy='cached'"):
        SamplingOptions(strategy="full", prefix_runner=runner)


def test_photometric_jitter_needs_the_normalisation(tiny_bundle: Bundle) -> None:
    with pytest.raises(ValueError, match="mean and std"):
        run_passes(tiny_bundle.net, _x(0), SamplingOptions(samples=0, tta="photometric"))
    assert run_passes(tiny_bundle.net, _x(0), SamplingOptions(samples=0, tta="flips")).samples == 4
