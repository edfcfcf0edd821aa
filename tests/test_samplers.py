"""The sampler plan: which sampler each pass gets, that it is chosen once before any pass runs, and the factorised fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import make_tiny_bundle

from app.engine.augment import Augmentation, tta_plan
from app.engine.network import SegmentationNet
from app.engine.options import SamplingOptions
from app.engine.passes import run_passes
from app.engine.samplers import CachedTail, FactorisedTail, FullPasses, Sampler, TiledTail, auto_chunk, choose_sampler, nbytes
from app.io.bundle import Bundle, load_bundle

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FLIP, SCALED = Augmentation(flip_h=True), Augmentation(scale=0.75)


def _x() -> torch.Tensor:
    return torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))


def test_each_pass_gets_the_fastest_sampler_that_applies(tiny_bundle: Bundle, tmp_path: Path) -> None:
    head = tiny_bundle.net  # channel dropout before a linear stride-1 head: tileable
    decoder = load_bundle(make_tiny_bundle(tmp_path / "d", sites=["head", "decoder.blocks.1"])).net
    cases: list[tuple[SegmentationNet, Augmentation, SamplingOptions, type]] = [
        (head, Augmentation(), SamplingOptions(samples=3), TiledTail),
        (head, FLIP, SamplingOptions(samples=3), TiledTail),
        (head, SCALED, SamplingOptions(samples=3), FactorisedTail),  # sums of a resized pass cannot be mapped back
        (head, Augmentation(), SamplingOptions(samples=0), FactorisedTail),  # nothing to tile
        (head, Augmentation(), SamplingOptions(samples=3, factorise=False), CachedTail),
        (head, Augmentation(), SamplingOptions(samples=3, strategy="full"), FullPasses),
        (decoder, FLIP, SamplingOptions(samples=3), CachedTail),
    ]
    for net, aug, options, kind in cases:
        sampler = choose_sampler(net, aug, options)
        assert type(sampler) is kind, (aug, options, sampler)
        assert sampler.uses_prefix == (kind is not FullPasses)


def test_the_plan_is_chosen_once_before_any_pass_runs(tiny_bundle: Bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    """flips+scales: 12 samplers chosen up front (tiled for the flips, factorised for the scaled passes), then 12 prefixes."""
    net = tiny_bundle.net
    events: list[str] = []
    prefix = net.prefix

    def spy_choose(member: SegmentationNet, aug: Augmentation, options: SamplingOptions) -> Sampler:
        sampler = choose_sampler(member, aug, options)
        events.append(type(sampler).__name__)
        return sampler

    def spy_prefix(x: torch.Tensor) -> Any:
        events.append("prefix")
        return prefix(x)

    monkeypatch.setattr("app.engine.passes.choose_sampler", spy_choose)
    monkeypatch.setattr(net, "prefix", spy_prefix)
    run_passes(net, _x(), SamplingOptions(samples=2, tta="flips+scales"), MEAN, STD)
    kinds = ["TiledTail" if aug.permutes else "FactorisedTail" for aug in tta_plan("flips+scales", 0)]
    assert events == kinds + ["prefix"] * 12


def test_the_factorised_head_falls_back_to_the_chunked_tail_over_its_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget below the per-channel head outputs: the factorised sampler runs the cached tail's chunks, with the same maps."""
    net = load_bundle(make_tiny_bundle(tmp_path / "b")).net
    built: list[object] = []

    def spy(self: object, *args: object) -> None:
        built.append(self)

    monkeypatch.setattr("app.engine.samplers.FactorisedHead.__init__", spy)
    options = SamplingOptions(samples=4, seed=1, chunk_size=2, memory_budget=1)
    assert isinstance(choose_sampler(net, SCALED, options), FactorisedTail)
    small = run_passes(net, _x(), SamplingOptions(samples=4, seed=1, chunk_size=2, memory_budget=1, tta="flips+scales"), MEAN, STD)
    plain = run_passes(net, _x(), SamplingOptions(samples=4, seed=1, chunk_size=2, factorise=False, tta="flips+scales"), MEAN, STD)
    assert built == []
    torch.testing.assert_close(small.mean_probs, plain.mean_probs, atol=2e-6, rtol=0)


def test_sizes_and_chunks() -> None:
    """nbytes counts every tensor of a pytree; auto_chunk charges 3 cached + 4 logits bytes per sample."""
    value = {"a": [torch.zeros(2, 3), (torch.zeros(4, dtype=torch.float16), 7)]}
    assert nbytes(value) == 2 * 3 * 4 + 4 * 2
    assert auto_chunk(100, 10, 1000, 50) == 1000 // 340
