"""Keep-masks drawn independently for every block of pixels, and the pixel layout that groups each block's pixels.

Textbook MC dropout draws one channel mask per sample for the whole image, so every pixel sees the same ``T``
masks: the maps are per-pixel expectations, but their errors are shared by all pixels, and the image mean of a map
is as noisy as one pixel (a draw that drops an important channel moves every pixel at once). Each pixel's own
statistics only depend on its own masks' distribution, so drawing the masks independently for each block of
``L`` pixels of a row leaves every pixel's estimator exactly as it was (same distribution, same bias,
same noise) while the errors of different blocks become independent and the image mean averages them out. The
blocks of a row interleave, so neighbouring pixels never share masks.

Block ``j`` of row ``r`` of image ``b`` (pixels ``j, j + W/L, …`` of the row: :func:`to_blocks`) gets ``T`` masks of
``K`` channels, each channel kept with probability ``1 - rate`` independently. They depend on the seed and the row
band, never on how rows are tiled: the masks of each band of ``ROW_BAND`` rows come from one generator seeded by ``(seed, band, site)``. Pure tensor code.
"""

from __future__ import annotations

import numpy as np
import torch

from app.engine.dropout_masks import mask_seed

__all__ = ["BLOCK_STREAM", "MAX_BLOCK", "MIN_BLOCKS", "ROW_BAND", "block_length", "block_masks", "from_blocks", "to_blocks", "write_blocks"]

MAX_BLOCK = 64
MIN_BLOCKS = 4096
ROW_BAND = 16
BLOCK_STREAM = 2


def block_length(width: int, height: int) -> int:
    """``L``: the largest power of two ``<= MAX_BLOCK`` that divides ``width`` and leaves at least ``MIN_BLOCKS`` blocks.

    Long blocks make the grouped products efficient; a small image gets short ones, so that its image mean still
    averages thousands of independent errors.
    """
    length = MAX_BLOCK
    while length > 1 and (width % length or width * height < MIN_BLOCKS * length):
        length //= 2
    return length


def block_masks(seed: int, site: int, rate: float, rows: range, batch: int, width: int, length: int, samples: int, channels: int) -> torch.Tensor:
    """Scaled keep-masks (0 or ``1 / (1 - rate)``) of every block of ``rows``: ``(B · R · W/L, T, K)``, block-major in raster order.

    Args:
        seed: The analysis's mask seed.
        site: The dropout site, mixed into the seed.
        rate: Drop probability, in ``[0, 1)``.
        rows: The image rows whose blocks are wanted.
        batch: ``B``.
        width: ``W``.
        length: ``L`` (:func:`block_length`; divides ``W``).
        samples: ``T``.
        channels: ``K``.
    """
    blocks = width // length
    bands = []
    first = rows.start // ROW_BAND
    for band in range(first, -(-rows.stop // ROW_BAND)):
        gen = np.random.default_rng(mask_seed(seed, band, site, BLOCK_STREAM))
        bands.append(torch.from_numpy(gen.random((batch, ROW_BAND, blocks, samples, channels), dtype=np.float32)))
    if not bands:
        return torch.zeros(0, samples, channels)
    start = rows.start - first * ROW_BAND
    keep = torch.cat(bands, dim=1)[:, start : start + len(rows)] >= rate
    return keep.reshape(batch * len(rows) * blocks, samples, channels).float().div_(1.0 - rate)


def to_blocks(x: torch.Tensor, length: int, width: int) -> torch.Tensor:
    """``(B, *F, n)`` with ``n = R · W`` raster pixels → ``(B · R · W/L, *F, L)``, block-major, each block's pixels last.

    Block ``j`` of a row holds its pixels ``j, j + W/L, j + 2W/L, …``: interleaved, so that a pixel's neighbours in the
    row belong to other blocks and the maps' remaining noise is a fine grain, not dashes ``L`` pixels long.
    """
    b, *features, n = x.shape
    rows, per = n // width, width // length
    grouped = x.reshape(b, -1, rows, length, per).permute(0, 2, 4, 1, 3)
    return grouped.reshape(b * rows * per, *features, length)


def from_blocks(x: torch.Tensor, batch: int, width: int) -> torch.Tensor:
    """The inverse of :func:`to_blocks`: ``(B · R · W/L, *F, L)`` → ``(B, *F, n)``."""
    blocks, *features, length = x.shape
    per = width // length
    rows = blocks // (batch * per)
    grouped = x.reshape(batch, rows, per, -1, length).permute(0, 3, 1, 4, 2)
    return grouped.reshape(batch, *features, rows * width)


def write_blocks(dest: torch.Tensor, x: torch.Tensor, batch: int, width: int) -> None:
    """``dest.copy_(from_blocks(x, batch, width))`` in one strided copy, without the intermediate: ``dest`` ``(B, *F, n)``, its last dim contiguous."""
    blocks, *features, length = x.shape
    per = width // length
    rows = blocks // (batch * per)
    f = len(features)
    target = dest.view(batch, *features, rows, length, per).permute(0, f + 1, f + 3, *range(1, f + 1), f + 2)
    target.copy_(x.view(batch, rows, per, *features, length))
