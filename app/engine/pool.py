"""The statistics every pass of one analysis adds to: pass 0's deterministic softmax ``p`` and all passes' draws.

A :class:`PassPool` is what the samplers (:mod:`app.engine.samplers`) feed. A pass hands it its deterministic
logits, chunks of MC sample logits (softmaxed here and mapped back to the input's frame,
:func:`~app.engine.augment.restore_samples`) or the row tiles of its sums (the tiled head). Everything lands in one
:class:`~app.maps.replicates.GroupedMoments`, so memory does not grow with the passes or ``T``:

- ``p`` (softmax confidence and the shift of the sums) is pass 0's deterministic softmax;
- with ``T = 0`` and several passes, each pass's deterministic softmax is its one draw (computed exactly as ``p``,
  so a pass identical to pass 0 adds exactly ``p`` and ``H[p]``); with ``T = 0`` and one pass there is no draw and
  the maps are those of ``p``;
- a single tiled pass needs no pooled planes: the tiled head's own sums and row-tile replicates are the
  statistics (:meth:`PassPool.adopt`), which keeps its memory at one set of sums instead of ``G``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from app.engine.augment import Augmentation, restore, restore_samples
from app.maps.functions import entropy, softmax_entropy
from app.maps.moments import StreamingMoments, UncertaintyMaps, finalize
from app.maps.pooling import add_block
from app.maps.replicates import GroupedMoments, finalize_grouped

__all__ = ["PassPool", "RowSink"]

RowSink = Callable[[int, int, GroupedMoments], None]


class PassPool:
    """The pooled statistics of ``passes`` passes of ``samples`` MC samples each.

    Args:
        passes: Passes that will add to the pool (members × augmentations).
        samples: MC samples ``T`` per pass.
        groups: Jackknife groups (0 or 1: none).
        temperature: ``τ`` in ``softmax(z / τ)``.
    """

    def __init__(self, passes: int, samples: int, groups: int, temperature: float) -> None:
        self.passes = passes
        self.samples = samples
        self.groups = groups
        self.temperature = temperature
        self.probs: torch.Tensor | None = None
        self._moments: GroupedMoments | None = None
        self._adopted: tuple[StreamingMoments, dict[str, torch.Tensor] | None] | None = None
        self._finished: UncertaintyMaps | None = None

    @property
    def needs_deterministic(self) -> bool:
        """Whether the next pass must hand in its deterministic logits: the first pass (for ``p``), or every pass when ``T = 0``."""
        return self.probs is None or self.samples == 0

    @property
    def classes(self) -> int:
        """``C``, known once ``p`` is."""
        return int(self._p().shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of ``p``, the frame every pass is mapped back to (the input's, unless the network's output is not at its size)."""
        p = self._p()
        return int(p.shape[-2]), int(p.shape[-1])

    def deterministic(self, index: int, aug: Augmentation, logits: torch.Tensor) -> None:
        """Add pass ``index``'s deterministic ``(B, C, h, w)`` logits: ``p`` for the first pass, its one draw when ``T = 0`` and there are several passes."""
        probs = torch.softmax(logits.float() / self.temperature, dim=1)
        if self.probs is None:
            self.probs = probs
        if self.samples == 0 and self.passes > 1:
            restored = restore(aug, probs, self.size)
            self._pooled().update(restored, range(index, index + 1), entropy(restored))

    def add_samples(self, aug: Augmentation, ids: range, logits: torch.Tensor) -> None:
        """Add a pass's MC samples ``ids``: sample-major ``(len(ids) * B, C, h, w)`` logits, mapped back to the input frame."""
        probs, entropies = restore_samples(aug, *softmax_entropy(logits, self.temperature), self.size)
        self._pooled().update(probs, ids, entropies)

    def row_sink(self, aug: Augmentation) -> RowSink:
        """A sink for a permuting pass's row tiles of sums (:meth:`~app.engine.tiled_head.TiledHeadSampler.stream`), flipped back into the pool."""

        def sink(r0: int, r1: int, block: GroupedMoments) -> None:
            height = self.size[0]
            rows = slice(height - r1, height - r0) if aug.flip_v else slice(r0, r1)
            add_block(self._pooled(), block, rows, aug.dims)

        return sink

    def adopt(self, probs: torch.Tensor, total: StreamingMoments, replicates: dict[str, torch.Tensor] | None) -> None:
        """Take the one pass's finished statistics (:meth:`~app.engine.tiled_head.TiledHeadSampler.run`): ``p``, its sums and replicates.

        Raises:
            ValueError: the pool has other passes or draws to pool.
        """
        if self.passes != 1 or self._moments is not None:
            raise ValueError("only the one pass of a single-pass analysis can hand over finished statistics")
        self.probs = probs
        self._adopted = (total, replicates)

    def adopt_maps(self, maps: UncertaintyMaps) -> None:
        """Take the one pass's finished maps (:class:`~app.engine.rb_head.RaoBlackwellHead`).

        Raises:
            ValueError: the pool has other passes or draws to pool.
        """
        if self.passes != 1 or self._moments is not None:
            raise ValueError("only the one pass of a single-pass analysis can hand over finished maps")
        self.probs = maps.probs
        self._finished = maps

    def result(self) -> UncertaintyMaps:
        """The maps of everything added; ``(B, H, W)`` maps, ``(B, C, H, W)`` probabilities.

        Raises:
            ValueError: no pass handed in a deterministic softmax.
        """
        if self.probs is None:
            raise ValueError("no pass added to the pool")
        if self._finished is not None:
            return self._finished
        if self._adopted is not None:
            total, replicates = self._adopted
            return replace(finalize(self.probs, total), replicates=replicates)
        if self._moments is None:
            return finalize(self.probs, None)
        return finalize_grouped(self.probs, self._moments)

    def _p(self) -> torch.Tensor:
        if self.probs is None:
            raise ValueError("the first pass hands in its deterministic logits before anything else")
        return self.probs

    def _pooled(self) -> GroupedMoments:
        """The pooled sums, zeroed at the first draw: ``G`` planes of ``(B, C, H, W)``, whatever the number of passes."""
        if self._moments is None:
            p = self._p()
            moments = GroupedMoments(p, self.samples or self.passes, self.groups, passes=self.passes if self.samples else 1)
            moments.zeros(int(p.shape[0]), int(p.shape[1]), int(p.shape[2]), int(p.shape[3]), p.device)
            self._moments = moments
        return self._moments
