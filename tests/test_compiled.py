"""Compiled kernels: the compiled result equals the eager one, and every failure falls back to eager, once, with a warning."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from app.engine import compiled
from app.engine.compiled import Kernel, compilation_enabled, set_compilation
from app.maps.rao_blackwell import draw_moments, enumeration


def _softplus_sum(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.nn.functional.softplus(x) * y, (x - y).square().sum(dim=1)


@pytest.fixture(autouse=True)
def _compilation_restored() -> Iterator[None]:
    before = compilation_enabled()
    yield
    set_compilation(before)


def _inputs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(3, n, generator=gen), torch.randn(3, n, generator=gen)


def test_the_compiled_kernel_equals_the_eager_function_at_several_sizes() -> None:
    kernel = Kernel(_softplus_sum)
    for n in (7, 64, 33):
        x, y = _inputs(n, n)
        got, expected = kernel(x, y), _softplus_sum(x, y)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert kernel.mode == ("compiled" if shutil.which("g++") or shutil.which("cc") else "eager")


def test_a_compiler_failure_falls_back_to_eager_with_one_warning(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(fn: Any, **_: Any) -> Any:
        def run(*args: Any) -> Any:
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(compiled.torch, "compile", broken)
    kernel = Kernel(_softplus_sum)
    with caplog.at_level(logging.WARNING, logger="app.engine.compiled"):
        for n in (5, 6):
            x, y = _inputs(n)
            torch.testing.assert_close(kernel(x, y)[1], _softplus_sum(x, y)[1])
    assert kernel.mode == "eager"
    assert [r.getMessage() for r in caplog.records if "runs eagerly" in r.getMessage()] == [
        "_softplus_sum runs eagerly: compiling it failed (RuntimeError: no C++ compiler)"
    ]


def test_a_compiled_result_that_differs_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong(fn: Any, **_: Any) -> Any:
        return lambda *args: tuple(t + 1.0 for t in fn(*args))

    monkeypatch.setattr(compiled.torch, "compile", wrong)
    kernel = Kernel(_softplus_sum)
    x, y = _inputs(4)
    for _ in range(2):
        torch.testing.assert_close(kernel(x, y)[0], _softplus_sum(x, y)[0])
    assert kernel.mode == "eager"


def test_compilation_off_never_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def counting(fn: Any, **_: Any) -> Any:
        calls.append(fn)
        return fn

    monkeypatch.setattr(compiled.torch, "compile", counting)
    set_compilation(False)
    kernel = Kernel(_softplus_sum)
    x, y = _inputs(4)
    kernel(x, y)
    assert calls == [] and kernel.mode == "eager"
    set_compilation(True)
    kernel(x, y)
    assert calls == [_softplus_sum] and kernel.mode == "compiled"


def test_the_compiled_draw_kernel_matches_a_float64_reference() -> None:
    """Rao–Blackwellised draw moments, compiled, against the same sums written out branch by branch in float64."""
    gen = torch.Generator().manual_seed(1)
    b, kk, c, n, t, k, keep = 1, 5, 3, 11, 4, 2, 0.8
    rest = torch.randn(b, kk, c * n, generator=gen)
    masks = (torch.rand(b, t, kk, generator=gen) > 0.2).float() / keep
    bias, tau = torch.randn(c, generator=gen), torch.tensor(1.3)
    patterns, weights = enumeration(k, keep, torch.device("cpu"))
    offsets = torch.matmul(patterns, torch.randn(b, k, c * n, generator=gen)).view(b, 2**k, c, n) / tau
    log_s = offsets - offsets.amax(dim=2, keepdim=True)
    p, q, h = Kernel(draw_moments)(masks, rest, bias, tau, log_s, weights)
    z = ((torch.bmm(masks, rest).view(b, t, c, n) + bias.view(1, 1, c, 1)) / tau).double()
    branch = torch.softmax(z.unsqueeze(2) + offsets.double().unsqueeze(1), dim=3)  # (B, T, S, C, n)
    w = weights.double().view(1, 1, -1, 1, 1)
    torch.testing.assert_close(p.double(), (w * branch).sum(2), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(q.double(), (w * branch.square()).sum(2), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h.double(), (w * torch.special.entr(branch)).sum(2).sum(2), rtol=1e-5, atol=1e-6)
