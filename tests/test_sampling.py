"""The MC-dropout engine: eval-mode safety, seeding, cached == full, chunking, memory, options, temperature."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_bundle

from app.engine.cancel import AnalysisCancelled, CancelToken
from app.engine.dropout import sampling_plan
from app.engine.sampling import SamplingOptions, auto_chunk, run_mc
from app.engine.sliding_window import plan_grid, sliding_window_mc
from app.io.bundle import Bundle, load_bundle
from app.maps.moments import UncertaintyMaps

CONFIGS = {
    "head-channel": (["head"], "channel"),
    "decoder-channel": (["head", "decoder.blocks.1"], "channel"),
    "head-element": (["head"], "element"),
    "decoder-element": (["decoder.blocks.1"], "element"),
}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundle_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One saved tiny bundle per dropout configuration."""
    base = tmp_path_factory.mktemp("sampling")
    return {key: make_tiny_bundle(base / key, sites=sites, mode=mode, seed=1) for key, (sites, mode) in CONFIGS.items()}


def _x(b: int = 1, h: int = 32, w: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _run(bundle: Bundle, x: torch.Tensor, **kwargs: object) -> UncertaintyMaps:
    return run_mc(bundle.net, x, SamplingOptions(**kwargs))  # type: ignore[arg-type]


def _assert_maps_close(a: UncertaintyMaps, b: UncertaintyMaps, atol: float) -> None:
    assert a.samples == b.samples
    assert torch.equal(a.prediction, b.prediction)
    for name, value in a.scalar_maps().items():
        assert torch.allclose(value, b.scalar_maps()[name], atol=atol, rtol=0), name
    assert torch.allclose(a.mean_probs, b.mean_probs, atol=atol, rtol=0)
    assert torch.allclose(a.class_variance, b.class_variance, atol=atol, rtol=0)
    assert torch.allclose(a.probs, b.probs, atol=atol, rtol=0)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("strategy", ["cached", "full"])
def test_analysis_leaves_every_parameter_and_buffer_unchanged(bundle_dirs: dict[str, Path], config: str, strategy: str) -> None:
    """BatchNorm running stats and all weights are bit-for-bit unchanged; the model stays in eval mode."""
    bundle = load_bundle(bundle_dirs[config])
    before = {k: v.clone() for k, v in bundle.net.state_dict().items()}
    assert any("running_mean" in k for k in before)
    _run(bundle, _x(b=2), samples=5, seed=3, strategy=strategy, chunk_size=2)
    after = bundle.net.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []
    assert not any(m.training for m in bundle.net.modules())


def test_model_in_train_mode_is_rejected(tiny_bundle: Bundle) -> None:
    """run_mc refuses a network in train mode (BatchNorm would update its statistics)."""
    tiny_bundle.net.train()
    with pytest.raises(RuntimeError, match="eval"):
        _run(tiny_bundle, _x(), samples=2)


def test_model_with_a_submodule_in_train_mode_is_rejected(tiny_bundle: Bundle) -> None:
    """A wrapper in eval mode whose inner model was put back in train mode is rejected too, stats untouched."""
    before = {k: v.clone() for k, v in tiny_bundle.net.state_dict().items()}
    tiny_bundle.net.model.get_submodule("decoder").train()
    assert not tiny_bundle.net.training
    with pytest.raises(RuntimeError, match="eval"):
        _run(tiny_bundle, _x(), samples=2)
    assert all(torch.equal(before[k], v) for k, v in tiny_bundle.net.state_dict().items())


def test_same_seed_same_maps_different_seed_different_mi(tiny_bundle: Bundle) -> None:
    """Seeded repeatability: same seed → identical maps; another seed → different MI."""
    x = _x(seed=1)
    a = _run(tiny_bundle, x, samples=6, seed=42, chunk_size=4)
    torch.manual_seed(999)  # the global RNG must not matter
    b = _run(tiny_bundle, x, samples=6, seed=42, chunk_size=4)
    c = _run(tiny_bundle, x, samples=6, seed=43, chunk_size=4)
    _assert_maps_close(a, b, atol=0.0)
    assert a.mutual_information.max() > 1e-3
    assert not torch.allclose(a.mutual_information, c.mutual_information, atol=1e-4)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_cached_path_equals_full_forward_per_sample(bundle_dirs: dict[str, Path], config: str) -> None:
    """Prefix caching gives the same maps as a full forward per sample with the same seed."""
    bundle = load_bundle(bundle_dirs[config])
    x = _x(b=2, seed=2)
    cached = _run(bundle, x, samples=5, seed=7, strategy="cached", chunk_size=3)
    full = _run(bundle, x, samples=5, seed=7, strategy="full")
    _assert_maps_close(cached, full, atol=2e-5)
    assert cached.mutual_information.max() > 1e-3


@pytest.mark.parametrize("chunk_size", [1, 4, None])
def test_factorised_head_equals_plain_tail(bundle_dirs: dict[str, Path], chunk_size: int | None) -> None:
    """Head-only channel dropout: the factorised head gives the plain cached tail's and the full path's maps."""
    bundle = load_bundle(bundle_dirs["head-channel"])
    x = _x(b=2, seed=8)
    fast = _run(bundle, x, samples=6, seed=3, chunk_size=chunk_size, factorise=True)
    plain = _run(bundle, x, samples=6, seed=3, chunk_size=chunk_size, factorise=False)
    full = _run(bundle, x, samples=6, seed=3, strategy="full")
    _assert_maps_close(fast, plain, atol=2e-5)
    _assert_maps_close(fast, full, atol=2e-5)
    assert fast.variance.max() > 1e-3


@pytest.mark.parametrize("config", ["head-channel", "decoder-channel", "decoder-element"])
def test_chunk_size_does_not_change_results(bundle_dirs: dict[str, Path], config: str) -> None:
    """chunk_size 1, 3 and automatic give the same maps."""
    bundle = load_bundle(bundle_dirs[config])
    x = _x(seed=3)
    results = [_run(bundle, x, samples=7, seed=5, chunk_size=chunk) for chunk in (1, 3, None)]
    _assert_maps_close(results[0], results[1], atol=2e-5)
    _assert_maps_close(results[0], results[2], atol=2e-5)


@pytest.mark.parametrize("config", ["head-channel", "decoder-element"])
def test_maps_match_an_independent_reference_from_stacked_samples(bundle_dirs: dict[str, Path], config: str) -> None:
    """Maps equal statistics of T stacked per-sample softmaxes computed here from plain forwards."""
    bundle = load_bundle(bundle_dirs[config])
    net, x, t, seed, tau = bundle.net, _x(b=2, seed=4), 6, 11, 1.5
    with torch.no_grad():
        p_det = torch.softmax(net(x) / tau, 1).double()
        stack = []
        for sample in range(t):
            with sampling_plan(seed, [sample]):
                stack.append(torch.softmax(net(x) / tau, 1).double())
    ps = torch.stack(stack)
    mean = ps.mean(0)
    pred = mean.argmax(1)
    entr = -(ps * ps.clamp(min=1e-300).log()).sum(2)
    h_mean = -(mean * mean.clamp(min=1e-300).log()).sum(1)
    picked = ps.gather(2, pred.unsqueeze(0).unsqueeze(2).expand(t, -1, 1, -1, -1)).squeeze(2)

    maps = _run(bundle, x, samples=t, seed=seed, temperature=tau, chunk_size=4)
    assert maps.samples == t
    assert torch.equal(maps.prediction, pred)
    assert torch.allclose(maps.confidence.double(), p_det.amax(1), atol=1e-5)
    assert torch.allclose(maps.mean_probs.double(), mean, atol=1e-5)
    assert torch.allclose(maps.variance.double(), picked.var(0, unbiased=False), atol=1e-5)
    assert torch.allclose(maps.expected_entropy.double(), entr.mean(0), atol=1e-5)
    assert torch.allclose(maps.entropy.double(), h_mean, atol=1e-5)
    assert torch.allclose(maps.mutual_information.double(), (h_mean - entr.mean(0)).clamp(min=0), atol=1e-5)
    assert maps.variance.max() > 1e-3


def test_zero_samples_is_the_deterministic_pass(tiny_bundle: Bundle) -> None:
    """T = 0: mean_probs = probs = softmax of the eval forward, MI = variance = 0."""
    x = _x(seed=5)
    maps = _run(tiny_bundle, x, samples=0)
    with torch.no_grad():
        ref = torch.softmax(tiny_bundle.net(x), 1)
    assert maps.samples == 0
    assert torch.allclose(maps.probs, ref, atol=1e-6)
    assert torch.equal(maps.mean_probs, maps.probs)
    assert torch.equal(maps.mutual_information, torch.zeros(1, 32, 48))
    assert torch.equal(maps.variance, torch.zeros(1, 32, 48))
    assert torch.equal(maps.prediction, ref.argmax(1))


def test_temperature_lowers_confidence_and_keeps_argmax(tiny_bundle: Bundle) -> None:
    """τ > 1 lowers (never raises) softmax confidence and raises entropy; the deterministic argmax is kept."""
    x = _x(seed=6)
    cold = _run(tiny_bundle, x, samples=0, temperature=1.0)
    hot = _run(tiny_bundle, x, samples=0, temperature=3.0)
    assert torch.equal(cold.prediction, hot.prediction)
    assert (hot.confidence <= cold.confidence + 1e-6).all()
    assert (hot.confidence < cold.confidence - 1e-3).float().mean() > 0.5
    assert (hot.entropy >= cold.entropy - 1e-6).all()
    with torch.no_grad():
        ref = torch.softmax(tiny_bundle.net(x) / 3.0, 1)
    assert torch.allclose(hot.probs, ref, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"samples": -1}, "samples"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"strategy": "fast"}, "strategy"),
    ],
)
def test_invalid_options_raise_value_error(kwargs: dict[str, object], field: str) -> None:
    """Bad options are rejected at construction with the field's name."""
    with pytest.raises(ValueError, match=field):
        SamplingOptions(**kwargs)  # type: ignore[arg-type]


def test_auto_chunk_fits_budget_and_bounds() -> None:
    """auto_chunk: (3 cached + 4 logits) bytes per sample within the budget, clamped to [1, samples]."""
    assert auto_chunk(100, 10, 1000, 50) == 1000 // 340
    assert auto_chunk(100, 10, 10**9, 50) == 50
    assert auto_chunk(100, 10, 1, 50) == 1
    assert auto_chunk(0, 0, 0, 5) == 1


@pytest.mark.slow
@pytest.mark.parametrize("factorise", [True, False], ids=["tiled-head", "chunked-tail"])
def test_peak_memory_does_not_grow_with_samples(tiny_bundle_dir: Path, factorise: bool) -> None:
    """Peak RSS of a 256×256 analysis with T = 200 is close to T = 4, far below storing all samples."""
    script = textwrap.dedent(
        """
        import resource, sys
        import torch
        torch.set_num_threads(1)
        from app.io.bundle import load_bundle
        from app.engine.sampling import SamplingOptions, run_mc
        bundle = load_bundle(sys.argv[1])
        x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
        options = SamplingOptions(samples=int(sys.argv[2]), seed=0, chunk_size=2, factorise=sys.argv[3] == "1")
        maps = run_mc(bundle.net, x, options)
        assert maps.samples == int(sys.argv[2])
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        """
    )
    peaks = {}
    for t in (4, 200):
        args = [sys.executable, "-c", script, str(tiny_bundle_dir), str(t), "1" if factorise else "0"]
        child = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert child.returncode == 0, child.stderr
        peaks[t] = int(child.stdout.strip().splitlines()[-1]) / 1024.0  # ru_maxrss is KiB on Linux
    stored_mb = 200 * 3 * 256 * 256 * 4 / 2**20
    allowed_mb = 60.0
    assert stored_mb > 2 * allowed_mb  # the bound can tell streaming from storing
    assert peaks[200] - peaks[4] < allowed_mb, peaks


class _StopAfter(CancelToken):
    """A token that cancels itself once ``limit`` checks have passed (as a watcher would, from another thread)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def check(self) -> None:
        if self.checks >= self.limit:
            self.cancel("test")
        super().check()


@pytest.mark.parametrize(
    ("factorise", "strategy", "chunk_size", "side", "samples"),
    [(True, "cached", None, 256, 63), (False, "cached", 2, 64, 12), (False, "full", None, 64, 12)],
    ids=["tiled-head", "chunked-tail", "full-forward"],
)
def test_a_cancelled_token_stops_sampling_at_the_next_chunk(
    tiny_bundle: Bundle, factorise: bool, strategy: str, chunk_size: int | None, side: int, samples: int
) -> None:
    """Every sampling loop checks the token between chunks (row tiles of the tiled head): cancelled after 3 checks, it raises at the 4th."""
    x = _x(h=side, w=side)
    options = {"samples": samples, "seed": 1, "factorise": factorise, "strategy": strategy, "chunk_size": chunk_size}
    counted = CancelToken()
    _run(tiny_bundle, x, **options, cancel=counted)
    assert counted.checks > 4 and counted.reason is None
    token = _StopAfter(3)
    with pytest.raises(AnalysisCancelled, match="test") as raised:
        _run(tiny_bundle, x, **options, cancel=token)
    assert raised.value.reason == "test" and token.checks == 4


def test_sliding_windows_check_the_token_between_tiles(tiny_bundle: Bundle) -> None:
    """A cancelled token stops a tiled analysis before its next tile; a token whose deadline has passed stops it at once."""
    rgb = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    norm = tiny_bundle.card.normalization
    stride = tiny_bundle.net.stride
    grid = plan_grid(96, 96, (4 * stride, 4 * stride), stride)
    assert len(grid.tops) * len(grid.lefts) > 2

    def run(token: CancelToken) -> None:
        sliding_window_mc(tiny_bundle.net, rgb, norm.mean, norm.std, 3, grid, SamplingOptions(samples=0, cancel=token))

    counted = CancelToken()
    run(counted)
    assert counted.checks == 2 * len(grid.tops) * len(grid.lefts)
    token = _StopAfter(2)
    with pytest.raises(AnalysisCancelled):
        run(token)
    assert token.checks == 3
    late = CancelToken(deadline=time.monotonic() - 1)
    with pytest.raises(AnalysisCancelled, match="deadline"):
        run(late)
    assert late.reason == "deadline" and late.checks == 1


def test_cancel_token_keeps_its_first_reason_and_options_ignore_it() -> None:
    token = CancelToken()
    token.check()
    token.cancel("disconnected")
    token.cancel("deadline")
    assert token.reason == "disconnected" and token.checks == 1
    assert SamplingOptions(cancel=token) == SamplingOptions()
