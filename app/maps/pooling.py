"""Pool the per-group MC sums of one pass into those of several passes, across a change of shift.

:class:`~app.maps.replicates.GroupedMoments` keeps ``Σ (p_t - s)`` and ``Σ (p_t - s)²`` per group for a shift ``s``.
A pass that summed its samples against its own shift ``s₁`` (the tiled head sums against the pass's deterministic
softmax) is added to sums against ``s₀`` exactly, with ``δ = s₁ - s₀`` and ``n`` the group's samples::

    Σ (p - s₀)  = Σ (p - s₁) + n δ
    Σ (p - s₀)² = Σ (p - s₁)² + 2 δ Σ (p - s₁) + n δ²

Pure tensor code; no model here.
"""

from __future__ import annotations

import torch

from app.maps.replicates import GroupedMoments

__all__ = ["add_block"]


def add_block(target: GroupedMoments, source: GroupedMoments, rows: slice, flip: tuple[int, ...] = ()) -> None:
    """Add ``source``'s sums (a block of rows of one pass, shifted by ``source.shift``) into rows ``rows`` of ``target``.

    Args:
        target: Pooled sums of full height, with a shift; groups as ``source``'s.
        source: Sums of ``(G, B, C, h, W)`` (``h`` = the rows of ``rows``) and their shift ``(B, C, h, W)``.
        rows: Rows of ``target`` the block lands on.
        flip: Dimensions of the block (negative, of a ``(…, h, W)`` tensor) to reverse first, mapping a flipped pass back.

    Raises:
        ValueError: the sums are missing, or the groups differ.
    """
    if target.sum_d is None or target.sum_d2 is None or target.sum_h is None or target.shift is None:
        raise ValueError("the target needs zeroed sums and a shift")
    if source.sum_d is None or source.sum_d2 is None or source.sum_h is None or source.shift is None:
        raise ValueError("the source needs accumulated sums and a shift")
    if [len(r) for r in target.ranges] != [len(r) for r in source.ranges]:
        raise ValueError(f"groups differ: {len(target.ranges)} and {len(source.ranges)}")

    def back(t: torch.Tensor) -> torch.Tensor:
        return t.flip(flip) if flip else t

    counts = torch.tensor([len(r) for r in source.ranges], dtype=torch.float32, device=source.sum_d.device).view(-1, 1, 1, 1, 1)
    sum_d = back(source.sum_d)
    delta = back(source.shift) - target.shift[:, :, rows]
    target.sum_d2[:, :, :, rows] += back(source.sum_d2) + 2.0 * delta * sum_d + counts * (delta * delta)
    target.sum_d[:, :, :, rows] += sum_d + counts * delta
    target.sum_h[:, :, rows] += back(source.sum_h)
