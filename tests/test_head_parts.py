"""The per-channel head outputs, compiled (row-flattened shifted products, a strided view) and eager, against each
input channel's own convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from app.maps.head_parts import per_channel_outputs


def _reference(framed: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Channel ``k`` convolved with ``weight[k, m]`` one channel at a time, in float64: ``(B, K, M, R, W)``."""
    outs = [F.conv2d(framed[:, k : k + 1].double(), weight[k].unsqueeze(1).double()) for k in range(framed.shape[1])]
    return torch.stack(outs, dim=1).float()


@pytest.mark.parametrize("kernel", [(3, 3), (1, 1), (3, 5)])
def test_compiled_and_eager_outputs_equal_each_channels_convolution(kernel: tuple[int, int]) -> None:
    torch.manual_seed(0)
    kh, kw = kernel
    framed = torch.randn(2, 3, 7 + kh - 1, 9 + kw - 1)
    weight = torch.randn(3, 4, kh, kw)
    expected = _reference(framed, weight)
    compiled = torch.compile(per_channel_outputs, dynamic=True)
    for rows in (7, 5):
        window = framed[:, :, : rows + kh - 1]
        got = compiled(window, weight)
        assert got.shape == (2, 3, 4, rows, 9)
        torch.testing.assert_close(got, expected[..., :rows, :], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(per_channel_outputs(window, weight), expected[..., :rows, :], rtol=1e-5, atol=1e-5)
