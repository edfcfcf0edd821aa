"""More sources of uncertainty in the one engine: test-time augmentation and deep ensembles, against references
computed here from plain forward passes (flips, resizes and softmaxes written out by hand)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_bundle

from app.defaults import TtaMode
from app.engine.augment import TTA_MODES, augment, tta_plan
from app.engine.dropout import sampling_plan
from app.engine.ensemble import EnsembleNet
from app.engine.network import SegmentationNet
from app.engine.passes import pass_plan, pass_seed, run_passes
from app.engine.sampling import SamplingOptions, run_mc
from app.engine.sliding_window import analyse_rgb
from app.engine.tile_budget import TileCost
from app.io.bundle import Bundle, load_bundle
from app.maps.mc_error import sample_groups
from app.maps.moments import UncertaintyMaps
from app.maps.replicates import GroupedMoments
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer

ROOT = Path(__file__).resolve().parent.parent
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FLIPS = [(), (-1,), (-2,), (-2, -1)]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny bundles: two with head dropout and different weights, one with decoder dropout."""
    base = tmp_path_factory.mktemp("methods")
    return {
        "a": make_tiny_bundle(base / "a", seed=1),
        "b": make_tiny_bundle(base / "b", seed=2),
        "decoder": make_tiny_bundle(base / "decoder", sites=["head", "decoder.blocks.1"], seed=3),
    }


def _x(h: int = 32, w: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _stats(samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every map of a list of ``(1, C, H, W)`` probability samples, in float64, from their definitions."""
    ps = torch.stack([s.double() for s in samples])
    mean = ps.mean(0)
    pred = mean.argmax(1)
    h = -(ps * ps.clamp(min=1e-300).log()).sum(2)
    h_mean = -(mean * mean.clamp(min=1e-300).log()).sum(1)
    picked = ps.gather(2, pred.unsqueeze(0).unsqueeze(2).expand(len(samples), -1, 1, -1, -1)).squeeze(2)
    return {
        "mean_probs": mean,
        "entropy": h_mean,
        "expected_entropy": h.mean(0),
        "mutual_information": (h_mean - h.mean(0)).clamp(min=0),
        "variance": picked.var(0, unbiased=False),
        "prediction": pred,
    }


def _assert_matches(maps: UncertaintyMaps, ref: dict[str, torch.Tensor], atol: float = 2e-5) -> None:
    assert torch.equal(maps.prediction, ref["prediction"])
    for name in ("mean_probs", "entropy", "expected_entropy", "mutual_information", "variance"):
        assert torch.allclose(getattr(maps, name).double(), ref[name], atol=atol, rtol=0), name


def _softmax(net: SegmentationNet, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(net(x), 1)


def test_flips_without_samples_equal_the_average_over_flipped_inputs(dirs: dict[str, Path]) -> None:
    """tta=flips, T=0: the four flipped inputs' softmaxes, flipped back, are the samples of every map."""
    net, x = load_bundle(dirs["a"]).net, _x()
    samples = [(_softmax(net, x.flip(d)).flip(d) if d else _softmax(net, x)) for d in FLIPS]
    maps = run_passes(net, x, SamplingOptions(samples=0, tta="flips"), MEAN, STD)
    assert maps.samples == 4
    _assert_matches(maps, _stats(samples))
    assert torch.allclose(maps.probs, _softmax(net, x), atol=1e-6)  # softmax confidence: the unaugmented pass
    assert maps.mutual_information.max() > 1e-3  # the flips disagree somewhere, so the test can tell


def test_no_samples_and_no_tta_is_the_deterministic_pass(dirs: dict[str, Path]) -> None:
    net, x = load_bundle(dirs["a"]).net, _x()
    maps = run_passes(net, x, SamplingOptions(samples=0, tta="none"), MEAN, STD)
    p = _softmax(net, x)
    assert maps.samples == 0
    assert torch.allclose(maps.mean_probs, p, atol=1e-6)
    assert torch.equal(maps.mutual_information, torch.zeros_like(maps.mutual_information))
    assert torch.equal(maps.variance, torch.zeros_like(maps.variance))
    assert torch.allclose(maps.entropy.double(), _stats([p])["entropy"], atol=1e-5)


def test_an_ensemble_of_two_identical_members_has_exactly_zero_mi_and_variance(dirs: dict[str, Path]) -> None:
    net, x = load_bundle(dirs["a"]).net, _x()
    twins = EnsembleNet([net, load_bundle(dirs["a"]).net]).eval()
    maps = run_passes(twins, x, SamplingOptions(samples=0), MEAN, STD)
    assert maps.samples == 2
    assert torch.equal(maps.mutual_information, torch.zeros_like(maps.mutual_information))
    assert torch.equal(maps.variance, torch.zeros_like(maps.variance))
    assert torch.equal(maps.class_variance, torch.zeros_like(maps.class_variance))
    assert torch.equal(maps.entropy, maps.expected_entropy)


def test_an_ensemble_of_two_members_equals_the_two_member_statistics(dirs: dict[str, Path]) -> None:
    a, b, x = load_bundle(dirs["a"]).net, load_bundle(dirs["b"]).net, _x()
    maps = run_passes(EnsembleNet([a, b]).eval(), x, SamplingOptions(samples=0), MEAN, STD)
    _assert_matches(maps, _stats([_softmax(a, x), _softmax(b, x)]))
    assert torch.allclose(maps.probs, _softmax(a, x), atol=1e-6)  # confidence: member 0
    assert maps.mutual_information.max() > 1e-2


def _reference_samples(members: list[SegmentationNet], x: torch.Tensor, dims_list: list[tuple[int, ...]], samples: int, seed: int) -> list[list[torch.Tensor]]:
    """Per pass (member-major, then flip), its ``samples`` MC softmaxes from full forwards, flipped back."""
    out = []
    for index, (net, dims) in enumerate((n, d) for n in members for d in dims_list):
        xa = x.flip(dims) if dims else x
        per = []
        for t in range(samples):
            with torch.no_grad(), sampling_plan(pass_seed(seed, index), [t]):
                p = torch.softmax(net(xa), 1)
            per.append(p.flip(dims) if dims else p)
        out.append(per)
    return out


@pytest.mark.parametrize(
    ("factorise", "size"), [(True, (32, 48)), (True, (256, 384)), (False, (32, 48))], ids=["tiled-head", "tiled-head-row-tiles", "chunked-tail"]
)
def test_flips_times_mc_dropout_equal_the_pass_by_pass_reference(dirs: dict[str, Path], factorise: bool, size: tuple[int, int]) -> None:
    """Every pass draws its own masks (seeded by the pass), its samples are flipped back and all are pooled (at 256×384 the
    tiled head sums several row tiles, which a vertical flip sends to mirrored rows)."""
    net, x, t, seed = load_bundle(dirs["a"]).net, _x(*size, seed=3), 5, 17
    passes = _reference_samples([net], x, FLIPS, t, seed)
    maps = run_passes(net, x, SamplingOptions(samples=t, seed=seed, tta="flips", factorise=factorise, chunk_size=2), MEAN, STD)
    assert maps.samples == 4 * t
    _assert_matches(maps, _stats([p for per in passes for p in per]))


def test_ensemble_times_flips_times_mc_with_decoder_dropout_equals_the_reference(dirs: dict[str, Path]) -> None:
    """Members × flips × T: pass k = member·4 + flip, its masks seeded by (seed, k); a decoder site takes the chunked tail."""
    a, b, x, t, seed = load_bundle(dirs["decoder"]).net, load_bundle(dirs["a"]).net, _x(seed=5), 3, 2
    passes = _reference_samples([a, b], x, FLIPS, t, seed)
    maps = run_passes(EnsembleNet([a, b]).eval(), x, SamplingOptions(samples=t, seed=seed, tta="flips"), MEAN, STD)
    assert maps.samples == 2 * 4 * t
    _assert_matches(maps, _stats([p for per in passes for p in per]))


def test_replicates_leave_the_same_sample_ids_out_of_every_pass(dirs: dict[str, Path]) -> None:
    """The jackknife groups of a multi-pass analysis are MC sample ids t, left out of every pass at once."""
    net, x, t, seed = load_bundle(dirs["a"]).net, _x(seed=1), 6, 4
    passes = _reference_samples([net], x, FLIPS, t, seed)
    maps = run_passes(net, x, SamplingOptions(samples=t, seed=seed, tta="flips", error_groups=3), MEAN, STD)
    assert maps.replicates is not None
    for g, span in enumerate(sample_groups(t, 3)):
        kept = [p for per in passes for i, p in enumerate(per) if i not in span]
        ref = _stats(kept)
        for name in ("entropy", "expected_entropy", "mutual_information"):
            assert torch.allclose(maps.replicates[name][:, g].double(), ref[name], atol=2e-5), (g, name)


def test_scales_resize_the_input_and_the_probabilities_back(dirs: dict[str, Path]) -> None:
    """flips+scales, T=0: scaled inputs (bilinear, antialiased when shrinking, to the stride), probabilities resized back and renormalised."""
    net, x = load_bundle(dirs["a"]).net, _x(h=64, w=96, seed=2)
    samples = []
    for scale in (1.0, 0.75, 1.25):
        size = (round(64 * scale / net.stride) * net.stride, round(96 * scale / net.stride) * net.stride)
        xs = x if scale == 1.0 else F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
        for dims in FLIPS:
            p = _softmax(net, xs.flip(dims) if dims else xs)
            p = p.flip(dims) if dims else p
            if scale != 1.0:
                p = F.interpolate(p, size=(64, 96), mode="bilinear", align_corners=False)
                p = p / p.sum(1, keepdim=True)
            samples.append(p)
    maps = run_passes(net, x, SamplingOptions(samples=0, tta="flips+scales"), MEAN, STD)
    assert maps.samples == 12
    _assert_matches(maps, _stats(samples))


def test_photometric_jitter_is_seeded_pointwise_and_starts_with_the_identity() -> None:
    a, b, c = tta_plan("photometric", 1), tta_plan("photometric", 1), tta_plan("photometric", 2)
    assert a == b and a != c and len(a) == 4
    assert a[0].identity and all(aug.jitter is not None for aug in a[1:])
    assert len({aug.jitter for aug in a[1:]}) == 3
    x = _x(h=32, w=32, seed=9)
    whole = augment(a[2], x, MEAN, STD, 8)
    tile = augment(a[2], x[..., 8:24, 16:32], MEAN, STD, 8)
    assert torch.equal(whole[..., 8:24, 16:32], tile)  # pointwise: a tile gets exactly the image's pixels
    assert not torch.allclose(whole, x)


def test_same_seed_same_maps_and_the_passes_draw_different_masks(dirs: dict[str, Path]) -> None:
    net, x = load_bundle(dirs["a"]).net, _x()
    options = SamplingOptions(samples=4, seed=3, tta="photometric")
    first, second = run_passes(net, x, options, MEAN, STD), run_passes(net, x, options, MEAN, STD)
    for name, value in first.scalar_maps().items():
        assert torch.equal(value, second.scalar_maps()[name]), name
    other = run_passes(net, x, SamplingOptions(samples=4, seed=4, tta="photometric"), MEAN, STD)
    assert not torch.equal(first.mutual_information, other.mutual_information)
    seeds = [pass_seed(3, k) for k in range(12)]
    assert seeds[0] == 3 and len(set(seeds)) == 12


def test_one_pooled_accumulator_whatever_the_number_of_passes(dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The pooled sums are allocated once, ``G`` planes deep, for 1, 4, 12 or 24 passes (memory independent of the passes)."""
    net = load_bundle(dirs["a"]).net
    pooled: list[tuple[int, ...]] = []
    zeros = GroupedMoments.zeros

    def spy(self: GroupedMoments, batch: int, classes: int, height: int, width: int, device: torch.device) -> None:
        if self.shift is not None:
            pooled.append((len(self.ranges), batch, classes, height, width))
        zeros(self, batch, classes, height, width, device)

    monkeypatch.setattr(GroupedMoments, "zeros", spy)
    x = _x()
    cases: tuple[tuple[SegmentationNet, TtaMode], ...] = ((net, "flips"), (net, "flips+scales"), (EnsembleNet([net, net]).eval(), "flips+scales"))
    for model, tta in cases:
        for t in (0, 3):
            pooled.clear()
            run_passes(model, x, SamplingOptions(samples=t, tta=tta, factorise=t == 3), MEAN, STD)
            assert pooled == [(3 if t else 1, 1, 3, 32, 48)], (tta, t)


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_number_of_passes(dirs: dict[str, Path]) -> None:
    """Peak RSS of a 256×256 ensemble of 12 members × 4 flips × T = 4 is close to 2 members × 4 flips."""
    script = textwrap.dedent(
        """
        import resource, sys
        import torch
        torch.set_num_threads(1)
        from app.io.bundle import load_bundle
        from app.engine.ensemble import EnsembleNet
        from app.engine.passes import run_passes
        from app.engine.sampling import SamplingOptions
        net = load_bundle(sys.argv[1]).net
        x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
        ensemble = EnsembleNet([net] * int(sys.argv[2])).eval()
        maps = run_passes(ensemble, x, SamplingOptions(samples=4, tta="flips", chunk_size=2), (0.5,) * 3, (0.25,) * 3)
        assert maps.samples == int(sys.argv[2]) * 4 * 4
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        """
    )
    peaks = {}
    for members in (2, 12):
        child = subprocess.run([sys.executable, "-c", script, str(dirs["a"]), str(members)], capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert child.returncode == 0, child.stderr
        peaks[members] = int(child.stdout.strip().splitlines()[-1]) / 1024.0
    stored_mb = 12 * 4 * 4 * 3 * 256 * 256 * 4 / 2**20
    allowed_mb = 40.0
    assert stored_mb > 2 * allowed_mb
    assert peaks[12] - peaks[2] < allowed_mb, peaks


@pytest.mark.parametrize("samples", [0, 3])
def test_sliding_windows_run_every_pass_per_tile(dirs: dict[str, Path], samples: int) -> None:
    """A tiled analysis pools the 4 flips of every tile (with T = 0 too, where one pass alone has MI = 0); maps stay in range."""
    bundle = load_bundle(dirs["a"])
    rgb = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    cost = TileCost(fixed=4000.0, sample=100.0, band=100.0)
    budget = 40 * 48 * 4000
    tiled, grid = analyse_rgb(bundle.net, rgb, MEAN, STD, 3, SamplingOptions(samples=samples, seed=1, tta="flips", memory_budget=budget), cost)
    assert grid is not None and len(grid.lefts) > 1
    assert tiled.samples == 4 * max(samples, 1)
    assert float(tiled.mutual_information.min()) >= 0 and float(tiled.mutual_information.max()) <= np.log(3) + 1e-6
    assert float(tiled.mutual_information.max()) > 1e-3
    assert float(tiled.variance.max()) <= 0.25 and torch.allclose(tiled.mean_probs.sum(1), torch.ones(1), atol=1e-5)
    single, _ = analyse_rgb(bundle.net, rgb, MEAN, STD, 3, SamplingOptions(samples=0, seed=1, memory_budget=budget), cost)
    assert float(single.mutual_information.max()) == 0.0


def test_plans_report_the_method_passes_and_draws(dirs: dict[str, Path]) -> None:
    net = load_bundle(dirs["a"]).net
    ensemble = EnsembleNet([net, net, net])
    cases: list[tuple[SegmentationNet, str, int, str, int, int]] = [
        (net, "none", 20, "mc_dropout", 1, 20),
        (net, "none", 0, "deterministic", 1, 0),
        (net, "flips", 0, "tta:flips", 4, 4),
        (net, "flips+scales", 2, "tta:flips+scales + mc_dropout", 12, 24),
        (ensemble, "none", 0, "ensemble(3)", 3, 3),
        (ensemble, "photometric", 5, "ensemble(3) + tta:photometric + mc_dropout", 12, 60),
    ]
    for model, tta, t, method, passes, draws in cases:
        plan = pass_plan(model, tta, t)
        assert (plan.method, plan.passes, plan.draws) == (method, passes, draws)
    assert pass_plan(net, "flips", 0).random is False and pass_plan(net, "photometric", 0).random is True
    with pytest.raises(ValueError, match="tta must be one of"):
        SamplingOptions(tta="rotations")  # type: ignore[arg-type]
    assert set(TTA_MODES) == {"none", "flips", "flips+scales", "photometric"}


def test_an_ensemble_has_no_single_forward_pass(dirs: dict[str, Path]) -> None:
    net = load_bundle(dirs["a"]).net
    ensemble = EnsembleNet([net, net]).eval()
    for call in (lambda: ensemble(_x()), lambda: ensemble.prefix(_x()), lambda: run_mc(ensemble, _x(), SamplingOptions(samples=0))):
        with pytest.raises(RuntimeError, match="member by member"):
            call()
    with pytest.raises(ValueError, match="at least 2"):
        EnsembleNet([net])
    with pytest.raises(ValueError, match="not ensembles"):
        EnsembleNet([net, ensemble])


def test_single_pass_is_run_mc_itself(tiny_bundle: Bundle) -> None:
    x = _x()
    for t in (0, 5):
        a = run_passes(tiny_bundle.net, x, SamplingOptions(samples=t, seed=2), MEAN, STD)
        b = run_mc(tiny_bundle.net, x, SamplingOptions(samples=t, seed=2))
        for name, value in a.scalar_maps().items():
            assert torch.equal(value, b.scalar_maps()[name]), name


def test_augmented_analyses_get_no_image_level_verdict() -> None:
    """The default model's image reference was fitted without augmentation, so only tta=none is compared with it: with flips
    the maps get no percentile (the feature distance, of the unaugmented pass, keeps its own) and the image is not checked."""
    analyzer = Analyzer(load_bundle("default"))
    rgb = np.random.default_rng(3).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    assert analyzer.bundle.card.image_reference is not None
    plain = analyzer.analyze_image(rgb, AnalysisRequest(samples=2))
    assert len(plain.image_ood) == 5 and plain.image_check is not None and plain.image_check.status != "not_checked"
    flipped = analyzer.analyze_image(rgb, AnalysisRequest(samples=2, tta="flips"))
    assert [v.map for v in flipped.image_ood] == ["feature_distance"]
    assert flipped.image_check is not None and flipped.image_check.status == "not_checked"
