"""Keep-masks drawn per block of pixels: seeded by row band, not by tiling; the right keep rate; blocks laid out and back."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from app.engine.block_masks import MIN_BLOCKS, block_length, block_masks, from_blocks, to_blocks, write_blocks
from app.engine.sampling import SamplingOptions, run_mc
from app.io.bundle import Bundle


def test_masks_depend_on_the_rows_not_on_how_they_are_tiled() -> None:
    whole = block_masks(7, 0, 0.2, range(0, 40), 2, 32, 8, 5, 6)
    parts = [block_masks(7, 0, 0.2, range(a, b), 2, 32, 8, 5, 6) for a, b in ((0, 3), (3, 17), (17, 40))]
    per_row = whole.view(2, 40, 4, 5, 6)
    stitched = torch.cat([p.view(2, -1, 4, 5, 6) for p in parts], dim=1)
    assert torch.equal(per_row, stitched)
    other_seed = block_masks(8, 0, 0.2, range(0, 40), 2, 32, 8, 5, 6)
    assert not torch.equal(whole, other_seed)


def test_masks_keep_each_channel_with_probability_one_minus_rate_and_scale_it() -> None:
    masks = block_masks(0, 1, 0.2, range(0, 64), 1, 256, 4, 10, 16)
    assert set(torch.unique(masks).tolist()) == {0.0, 1.25}
    kept = float((masks > 0).float().mean())
    n = masks.numel()
    assert abs(kept - 0.8) < 4 * (0.8 * 0.2 / n) ** 0.5
    blocks = masks.view(64, 64, 10, 16)
    assert not torch.equal(blocks[0, 0], blocks[0, 1]) and not torch.equal(blocks[0, 0], blocks[1, 0])


@pytest.mark.parametrize(("width", "height", "expected"), [(512, 512, 64), (128, 128, 4), (96, 4096, 32), (100, 1000, 4), (7, 7, 1)])
def test_block_length_divides_the_width_and_leaves_enough_blocks(width: int, height: int, expected: int) -> None:
    length = block_length(width, height)
    assert length == expected
    assert width % length == 0 and (length == 1 or width * height // length >= MIN_BLOCKS)


def test_blocks_interleave_along_the_row_and_from_blocks_undoes_it() -> None:
    x = torch.arange(2 * 3 * 16, dtype=torch.float32).view(2, 3, 16)  # B=2, F=3, two rows of 8 pixels
    blocks = to_blocks(x, 4, 8)
    assert blocks.shape == (8, 3, 4)
    assert torch.equal(blocks[0], x[0, :, [0, 2, 4, 6]]) and torch.equal(blocks[1], x[0, :, [1, 3, 5, 7]])
    assert torch.equal(blocks[2], x[0, :, [8, 10, 12, 14]]) and torch.equal(blocks[4], x[1, :, [0, 2, 4, 6]])
    assert torch.equal(from_blocks(blocks, 2, 8), x)


def test_write_blocks_puts_every_pixel_back_in_place_in_a_strided_destination() -> None:
    """Into rows 1:3 of a ``(B, G, H, W)`` buffer (its ``G`` slices not adjacent), as the head writes a tile's replicates."""
    x = torch.arange(2 * 3 * 16, dtype=torch.float32).view(2, 3, 16)
    buffer = torch.full((2, 3, 4, 8), -1.0)
    write_blocks(buffer[:, :, 1:3].view(2, 3, 16), to_blocks(x, 4, 8), 2, 8)
    assert torch.equal(buffer[:, :, 1:3].reshape(2, 3, 16), x)
    assert bool((buffer[:, :, [0, 3]] == -1.0).all())


def test_independent_blocks_take_the_seed_to_seed_noise_out_of_the_image_mean(tiny_bundle: Bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Rao–Blackwellised image mean of the mutual information over 16 seeds varies far less with a mask per block than
    with every block given block 0's masks (one mask per sample for the whole image, as textbook dropout draws)."""
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3)) * 1.5

    def spread() -> float:
        means = []
        for seed in range(16):
            maps = run_mc(tiny_bundle.net, x, SamplingOptions(samples=12, seed=seed, estimator="rao_blackwellised", enumerated=1))
            means.append(float(maps.mutual_information.double().mean()))
        return float(np.std(means))

    independent = spread()

    def shared(*args: Any) -> torch.Tensor:
        masks = block_masks(*args)
        blocks_per_image = masks.shape[0] // args[4]
        return masks.view(args[4], blocks_per_image, *masks.shape[1:])[:, :1].expand(-1, blocks_per_image, -1, -1).reshape(masks.shape)

    monkeypatch.setattr("app.engine.rb_head.block_masks", shared)
    assert independent > 0
    assert independent < 0.4 * spread()
