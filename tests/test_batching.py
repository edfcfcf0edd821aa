"""Dynamic batching of the deterministic prefix (app/workflows/batching.py) with the real tiny smp model, in threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_bundle

from app.engine.analysis import Analysis
from app.engine.cancel import AnalysisCancelled, CancelToken
from app.io.bundle import Bundle, load_bundle
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.batching import PrefixBatcher

SAMPLES = 6
# Batched convolutions round differently from single ones (measured on CPU: maps differ by up to 2.4e-6 on small images,
# not at all on 200 x 256 ones), so results agree to 1e-5, not bit for bit. Masks are per request, so any mix-up of
# rows, seeds or options shows up as differences of order 0.1.
ATOL = 1e-5
LONG_WAIT = 60.0

Job = tuple[np.ndarray, int, CancelToken | None]


def _image(seed: int, height: int = 48, width: int = 72) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _analyse(analyzer: Analyzer, rgb: np.ndarray, seed: int, cancel: CancelToken | None = None) -> Analysis:
    return analyzer.analyze_image(rgb, AnalysisRequest(samples=SAMPLES, seed=seed, min_area=1), cancel=cancel)


Results = list[Analysis | BaseException | None]


def _start(analyzer: Analyzer, jobs: Sequence[Job], results: Results, first: int = 0) -> list[threading.Thread]:
    """Analyse ``jobs`` in threads of their own, into ``results[first:]``."""

    def work(index: int, rgb: np.ndarray, seed: int, cancel: CancelToken | None) -> None:
        try:
            results[index] = _analyse(analyzer, rgb, seed, cancel)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=work, args=(first + i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    return threads


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()


def _run(analyzer: Analyzer, jobs: Sequence[Job]) -> Results:
    results: Results = [None] * len(jobs)
    _join(_start(analyzer, jobs, results))
    return results


def _wait_for(batcher: PrefixBatcher, waiting: int) -> None:
    deadline = time.monotonic() + 60
    while batcher.waiting < waiting:
        assert time.monotonic() < deadline, f"{batcher.waiting} inputs waiting, expected {waiting}"
        time.sleep(0.005)


def _assert_same(got: Analysis | BaseException | None, want: Analysis, atol: float = ATOL) -> None:
    assert isinstance(got, Analysis), got
    assert got.seed == want.seed
    for name, values in want.maps.items():
        np.testing.assert_allclose(got.maps[name], values, rtol=0, atol=atol, err_msg=name)
    np.testing.assert_allclose(got.mean_probs, want.mean_probs, rtol=0, atol=atol)
    np.testing.assert_allclose(got.class_variance, want.class_variance, rtol=0, atol=atol)
    # Only pixels whose top two classes are closer than the tolerance may change their predicted class.
    top2 = np.sort(want.mean_probs, axis=0)[-2:]
    decided = top2[1] - top2[0] > 2 * atol
    assert np.array_equal(got.prediction[decided], want.prediction[decided])


@pytest.fixture(scope="module")
def decoder_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with dropout inside the decoder: its prefix is the encoder, a list of feature maps."""
    return make_tiny_bundle(tmp_path_factory.mktemp("decoder") / "tiny_decoder", sites=["decoder.blocks.2"])


@pytest.mark.parametrize("where", ["head", "decoder"])
def test_batched_results_equal_unbatched_for_the_same_seeds(where: str, tiny_bundle_dir: Path, decoder_bundle_dir: Path) -> None:
    """Four images of one size with four seeds, batched in one prefix pass, give each one's own analysis."""
    bundle = load_bundle(tiny_bundle_dir if where == "head" else decoder_bundle_dir)
    jobs: list[Job] = [(_image(i), 100 + i, None) for i in range(4)]
    alone = [_analyse(Analyzer(bundle), rgb, seed) for rgb, seed, _ in jobs]
    assert not np.allclose(alone[0].maps["mutual_information"], alone[1].maps["mutual_information"], atol=0.01)
    sizes: list[int] = []
    batcher = PrefixBatcher(bundle.net, max_batch_size=4, max_wait=LONG_WAIT, observe=sizes.append)
    batched = _run(Analyzer(bundle, batcher=batcher), jobs)
    assert sizes == [4]
    for got, want in zip(batched, alone, strict=True):
        _assert_same(got, want)


def test_inputs_of_other_sizes_are_not_batched_together(tiny_bundle: Bundle) -> None:
    """Two sizes, two images each: two batches of two, each image still its own analysis."""
    jobs: list[Job] = [(_image(i, *size), 7 + i, None) for i, size in enumerate([(48, 72), (64, 64), (48, 72), (64, 64)])]
    alone = [_analyse(Analyzer(tiny_bundle), rgb, seed) for rgb, seed, _ in jobs]
    sizes: list[int] = []
    batcher = PrefixBatcher(tiny_bundle.net, max_batch_size=4, max_wait=2.0, observe=sizes.append)
    batched = _run(Analyzer(tiny_bundle, batcher=batcher), jobs)
    assert sizes == [2, 2]
    for got, want in zip(batched, alone, strict=True):
        _assert_same(got, want)


def test_batches_hold_at_most_max_batch_size(tiny_bundle: Bundle) -> None:
    """Five analyses at once with batches of two: 2 + 2 + 1 (the last one after its wait)."""
    sizes: list[int] = []
    batcher = PrefixBatcher(tiny_bundle.net, max_batch_size=2, max_wait=1.0, observe=sizes.append)
    results = _run(Analyzer(tiny_bundle, batcher=batcher), [(_image(i), i, None) for i in range(5)])
    assert all(isinstance(r, Analysis) for r in results)
    assert sorted(sizes) == [1, 2, 2]


def test_a_cancelled_leader_leaves_its_batch_mates_unharmed(tiny_bundle: Bundle) -> None:
    """The batch's first input is cancelled while it waits: it is left out, the other two get their own analyses."""
    jobs: list[Job] = [(_image(i), 40 + i, CancelToken()) for i in range(3)]
    alone = [_analyse(Analyzer(tiny_bundle), rgb, seed) for rgb, seed, _ in jobs]
    sizes: list[int] = []
    batcher = PrefixBatcher(tiny_bundle.net, max_batch_size=4, max_wait=3.0, observe=sizes.append)
    analyzer = Analyzer(tiny_bundle, batcher=batcher)
    results: Results = [None] * 3
    threads = _start(analyzer, jobs[:1], results)
    _wait_for(batcher, 1)
    threads += _start(analyzer, jobs[1:], results, first=1)
    _wait_for(batcher, 3)
    token = jobs[0][2]
    assert token is not None
    token.cancel("disconnected")
    _join(threads)
    assert isinstance(results[0], AnalysisCancelled) and results[0].reason == "disconnected"
    assert sizes == [2]
    _assert_same(results[1], alone[1])
    _assert_same(results[2], alone[2])


def test_batch_size_one_is_the_unbatched_analysis(tiny_bundle: Bundle) -> None:
    """With batches of one nothing waits or changes: results are bit for bit those of an analyser without a batcher."""
    jobs: list[Job] = [(_image(i), 60 + i, None) for i in range(3)]
    alone = [_analyse(Analyzer(tiny_bundle), rgb, seed) for rgb, seed, _ in jobs]
    sizes: list[int] = []
    batcher = PrefixBatcher(tiny_bundle.net, max_batch_size=1, max_wait=LONG_WAIT, observe=sizes.append)
    assert not batcher.enabled
    for got, want in zip(_run(Analyzer(tiny_bundle, batcher=batcher), jobs), alone, strict=True):
        _assert_same(got, want, atol=0.0)
    assert sizes == [1, 1, 1]


def test_images_analysed_in_sliding_windows_run_alone(tiny_bundle: Bundle) -> None:
    """An image too large for one pass is tiled and never waits for a batch (its tiles are not batched)."""
    cost = Analyzer(tiny_bundle).cost
    budget = int(cost.tile_bytes((64, 64), 128)) + 1
    rgb = _image(5, 96, 160)
    want = _analyse(Analyzer(tiny_bundle, memory_budget=budget), rgb, 3)
    sizes: list[int] = []
    batcher = PrefixBatcher(tiny_bundle.net, max_batch_size=4, max_wait=1.0, observe=sizes.append)
    analyzer = Analyzer(tiny_bundle, memory_budget=budget, batcher=batcher)
    assert analyzer.tile_grid(96, 160) is not None
    (got,) = _run(analyzer, [(rgb, 3, None)])
    _assert_same(got, want, atol=0.0)
    assert sizes == [1]


def test_a_network_without_a_shared_prefix_is_not_batched(tmp_path: Path) -> None:
    """Dropout in the encoder leaves no deterministic prefix worth sharing: every input runs alone, at once."""
    bundle = load_bundle(make_tiny_bundle(tmp_path / "enc", sites=["encoder.features.2"]))
    batcher = PrefixBatcher(bundle.net, max_batch_size=4, max_wait=LONG_WAIT)
    assert bundle.net.first_stochastic_stage == "encoder" and not batcher.enabled
    x = torch.randn(1, 3, 32, 32)
    assert batcher.prefix(x) is x


def test_bad_settings_are_refused(tiny_bundle: Bundle) -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        PrefixBatcher(tiny_bundle.net, max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait"):
        PrefixBatcher(tiny_bundle.net, max_batch_size=2, max_wait=-1.0)
