"""A linear head's per-channel outputs: every input channel convolved with its own slice of the head's weights.

``a_km = w_km * x_k`` for input channel ``k`` and output ``m`` is a grouped convolution (``groups = K``, ``M``
outputs a group). The library's grouped convolution runs it at a few GFLOP/s on a CPU (1.2 ms for a 52×512 row tile
of 16 channels and 4 outputs each). Taken over the tile flattened row by row, it is ``kh · kw`` shifted
multiply-adds of one contiguous loop, which the compiler vectorises with dynamic shapes (0.4 ms); the loop also
computes the ``kw - 1`` columns that straddle a row's end, which a strided view of its result leaves out (copied
to a contiguous tile by the caller: 0.3 ms). :func:`per_channel_outputs` is that loop under ``torch.compile``
(:class:`~app.engine.compiled.Kernel`) and the library's convolution when run eagerly. Pure tensor code; no model here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["per_channel_outputs"]


def per_channel_outputs(framed: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Each input channel's contribution to each output of a convolution without padding.

    Args:
        framed: ``(B, K, R + kh - 1, Wp)`` input, already padded (a row tile of the padded decoder output).
        weight: ``(K, M, kh, kw)``: input channel ``k``'s kernel for output ``m``.

    Returns:
        ``(B, K, M, R, W)``, ``W = Wp - kw + 1``: ``out[b, k, m]`` is ``framed[b, k]`` cross-correlated with
        ``weight[k, m]``. Compiled, a strided view of the row-flattened loop's result (its row stride ``Wp``);
        eager, the library's grouped convolution.
    """
    b, k, rows_in, width_in = framed.shape
    _, m, kh, kw = weight.shape
    rows, width = rows_in - kh + 1, width_in - kw + 1
    if not torch.compiler.is_compiling():
        return F.conv2d(framed, weight.reshape(k * m, 1, kh, kw), None, 1, 0, 1, groups=k).view(b, k, m, rows, width)
    n = rows * width_in - (kw - 1)
    flat = framed.reshape(b, k, 1, rows_in * width_in)
    out = flat[..., 0:n] * weight[:, :, 0, 0].reshape(1, k, m, 1)
    for dy in range(kh):
        for dx in range(kw):
            if dy or dx:
                start = dy * width_in + dx
                out = out + flat[..., start : start + n] * weight[:, :, dy, dx].reshape(1, k, m, 1)
    return torch.as_strided(out, (b, k, m, rows, width), (k * m * n, m * n, n, width_in, 1))
