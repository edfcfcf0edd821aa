"""Placing a network: channels-last weights on a CPU, the same values as the NCHW network."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from app.engine.device import place, resolve_device
from app.io.bundle import load_bundle


def _convs(module: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in module.modules() if isinstance(m, torch.nn.Conv2d)]


def test_a_loaded_bundle_runs_channels_last_on_the_cpu_with_the_nchw_values(tiny_bundle_dir: Path) -> None:
    bundle = load_bundle(tiny_bundle_dir, "cpu")
    weights = _convs(bundle.net)
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights if w.shape[-1] > 1)
    nchw = copy.deepcopy(bundle.net).to(memory_format=torch.contiguous_format)
    assert all(w.is_contiguous() for w in _convs(nchw))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out, reference = bundle.net(x), nchw(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


def test_place_leaves_the_layout_alone_off_the_cpu() -> None:
    conv = torch.nn.Conv2d(3, 4, 3)
    placed = place(conv, "meta")
    assert placed.weight.device.type == "meta" and placed.weight.is_contiguous()


def test_resolve_device_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")
