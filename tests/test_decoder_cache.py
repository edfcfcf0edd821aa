"""Caching inside the decoder: what is cached, that MC passes skip it, that the maps do not change, isolation."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_bundle
from torch import nn

from app.engine import decoder_cache
from app.engine.dropout import sampling_plan
from app.engine.sampling import SamplingOptions, run_mc
from app.io.bundle import load_bundle


class _Toy(nn.Module):
    """``a`` runs twice (shared), ``b`` once, then the site ``c``, then ``d``."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c, self.d = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d(self.c(self.b(self.a(self.a(x)))))


def test_cacheable_are_called_once_and_return_no_later_than_the_site() -> None:
    toy = _Toy()
    found = decoder_cache.find_cacheable(toy, lambda: toy(torch.zeros(1, 4)), [toy.c])
    assert found == [toy.b, toy.c]


def _tiny(tmp_path: Path, sites: list[str]) -> tuple[object, torch.Tensor]:
    bundle = load_bundle(make_tiny_bundle(tmp_path / "b", sites=sites, seed=2))
    x = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    return bundle.net, x


def test_a_decoder_site_caches_every_block_up_to_it(tmp_path: Path) -> None:
    net, _ = _tiny(tmp_path, ["decoder.blocks.1"])
    names = {id(m): n for n, m in net.model.decoder.named_modules()}  # type: ignore[attr-defined]
    assert sorted(names[id(m)] for m in net.cacheable) == ["blocks.0", "blocks.1", "center"]  # type: ignore[attr-defined]


def test_mc_passes_skip_the_cached_blocks_and_give_the_maps_of_full_forwards(tmp_path: Path) -> None:
    net, x = _tiny(tmp_path, ["decoder.blocks.1"])
    calls = {"blocks.0.conv1": 0, "blocks.2.conv1": 0}  # children: a cached block's own hooks still run, its children do not
    for name in calls:

        def count(_m: nn.Module, _a: object, n: str = name) -> None:
            calls[n] += 1

        net.model.decoder.get_submodule(name).register_forward_pre_hook(count)  # type: ignore[attr-defined]
    options = SamplingOptions(samples=6, seed=4, chunk_size=2)
    cached = run_mc(net, x, options)  # type: ignore[arg-type]
    # blocks.0 computes once (the prefix); blocks.2 in the prefix, the deterministic pass and each of the 3 chunks
    assert calls == {"blocks.0.conv1": 1, "blocks.2.conv1": 1 + 1 + 3}
    full = run_mc(net, x, SamplingOptions(samples=6, seed=4, strategy="full"))  # type: ignore[arg-type]
    for name in ("mean_probs", "class_variance", "mutual_information", "variance", "entropy"):
        torch.testing.assert_close(getattr(cached, name), getattr(full, name), atol=2e-6, rtol=1e-4)


def test_outside_a_pass_the_model_computes_as_if_nothing_were_installed(tmp_path: Path) -> None:
    net, x = _tiny(tmp_path, ["decoder.blocks.1"])
    plain = copy.deepcopy(net.model)  # type: ignore[attr-defined]
    for module in plain.decoder.modules():
        module.__dict__.pop("forward", None)
    with torch.inference_mode(), sampling_plan(3, [0]):
        torch.testing.assert_close(net(x), plain(x))  # type: ignore[operator]


def test_a_replaying_thread_does_not_leak_its_cache_into_another(tmp_path: Path) -> None:
    """One thread holds a replay of image A; a forward of image B in another thread still computes B."""
    net, x = _tiny(tmp_path, ["decoder.blocks.1"])
    other = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(9))
    with torch.inference_mode():
        expected = net(other)  # type: ignore[operator]
        cache_a = net.prefix(x)  # type: ignore[attr-defined]
    entered, done = threading.Event(), threading.Event()
    got: list[torch.Tensor] = []

    def replay() -> None:
        with decoder_cache.installed(net.cacheable), decoder_cache.replaying(cache_a.outputs, 1):  # type: ignore[attr-defined]
            entered.set()
            done.wait(30)

    def compute() -> None:
        entered.wait(30)
        with torch.inference_mode():
            got.append(net(other))  # type: ignore[operator]
        done.set()

    threads = [threading.Thread(target=replay), threading.Thread(target=compute)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    torch.testing.assert_close(got[0], expected)


def _replay(decoder: nn.Module) -> Callable[[list[torch.Tensor], dict[int, object]], torch.Tensor]:
    def run(features: list[torch.Tensor], outputs: dict[int, object]) -> torch.Tensor:
        with decoder_cache.replaying(outputs, 1):
            out: torch.Tensor = decoder(features)
        return out

    return run


class _Skips(nn.Module):
    """``b`` reads feature 0 (cached), the tail reads ``b``'s output and feature 1 directly, in the forward body."""

    def __init__(self, hide: bool) -> None:
        super().__init__()
        self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4)
        self.hide = hide

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        skip = torch.nan_to_num(features[1], nan=0.0) if self.hide else features[1]
        return self.c(self.b(features[0])) + skip


def test_only_what_a_pass_reads_is_kept_and_a_hidden_read_keeps_everything() -> None:
    features = [torch.randn(1, 4), torch.randn(1, 4)]
    for hide, expected in ((False, ({1}, {0})), (True, ({0, 1}, {0}))):
        toy = _Skips(hide)
        (cached,) = decoder_cache.find_cacheable(toy, partial(toy, features), [toy.b])
        assert cached is toy.b
        with torch.inference_mode(), decoder_cache.installed([toy.b]), decoder_cache.recording() as outputs:
            toy(features)
            kept = decoder_cache.needed(_replay(toy), features, dict(outputs))
        assert kept == expected, hide


@pytest.mark.parametrize(("site", "features", "outputs"), [("decoder.blocks.1", set(), {1}), ("decoder.blocks.0", {1}, {0})])
def test_a_unet_keeps_only_the_site_output_and_the_skips_after_it(tmp_path: Path, site: str, features: set[int], outputs: set[int]) -> None:
    """Tiny Unet (3 blocks; block 0 reads skip 2, block 1 skip 1, block 2 none); cacheable sorted by name, centre last."""
    net, x = _tiny(tmp_path, [site])
    assert net.kept == (features, outputs)  # type: ignore[attr-defined]
    with torch.inference_mode():
        cache = net.prefix(x)  # type: ignore[attr-defined]
    for i, f in enumerate(cache.features):
        assert (f.untyped_storage().nbytes() > 4) == (i in features), i
    for i, out in cache.outputs.items():
        assert (out.untyped_storage().nbytes() > 4) == (i in outputs), i


def test_installed_restores_each_module_forward_on_exit_even_nested_or_failing() -> None:
    """Inside the block the modules consult the cache; after it (the last of nested blocks, or an error) each has its own forward back."""
    toy = _Toy()
    own = toy.c.forward  # an instance forward set before must come back too
    setattr(toy.c, "forward", own)  # noqa: B010 (an instance attribute, as a user might set it)
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        before = toy(x)
    with decoder_cache.installed([toy.b, toy.c]):
        assert "forward" in toy.b.__dict__ and toy.c.__dict__["forward"] is not own
        with decoder_cache.installed([toy.b, toy.c]):
            pass
        assert "forward" in toy.b.__dict__  # the outer block still holds the installation
    assert "forward" not in toy.b.__dict__ and toy.b.forward.__func__ is nn.Linear.forward  # type: ignore[attr-defined]
    assert toy.c.__dict__["forward"] is own
    with pytest.raises(ZeroDivisionError), decoder_cache.installed([toy.b]):
        raise ZeroDivisionError
    assert "forward" not in toy.b.__dict__
    with torch.inference_mode():
        assert torch.equal(toy(x), before)


def test_an_analysis_leaves_no_patched_forward_and_the_same_outputs(tmp_path: Path) -> None:
    """After prefix, tail and a whole MC analysis, no decoder module has an instance forward, and the network computes as before."""
    net, x = _tiny(tmp_path, ["decoder.blocks.1"])
    assert net.cacheable  # type: ignore[attr-defined]
    with torch.inference_mode():
        before = net(x)  # type: ignore[operator]
        net.tail(net.prefix(x), 2)  # type: ignore[attr-defined]
    run_mc(net, x, SamplingOptions(samples=3, seed=1))  # type: ignore[arg-type]
    assert not [name for name, m in net.model.decoder.named_modules() if "forward" in m.__dict__]  # type: ignore[attr-defined]
    with torch.inference_mode():
        assert torch.equal(net(x), before)  # type: ignore[operator]


def test_a_deep_copy_of_the_network_computes_with_its_own_weights(tmp_path: Path) -> None:
    """A patched forward left on a module would be copied with it and still run the original module's weights."""
    net, x = _tiny(tmp_path, ["decoder.blocks.1"])
    twin = copy.deepcopy(net)
    with torch.no_grad():
        for p in twin.model.decoder.blocks[0].parameters():  # type: ignore[attr-defined]
            p.add_(0.5)
    with torch.inference_mode():
        assert not torch.allclose(twin(x), net(x))  # type: ignore[operator]
        assert not torch.allclose(twin.tail(twin.prefix(x), 1), net.tail(net.prefix(x), 1))  # type: ignore[attr-defined]
