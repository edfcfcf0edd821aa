"""How many bytes an analysed pixel costs, and the largest sliding-window tile a memory budget allows.

The rule (measured once per network by :func:`measure_cost`, on a ``4·stride`` square probe):

* ``fixed`` — per tile pixel: the most bytes of module outputs alive at once while the deterministic prefix
  and one pass of the stochastic tail run on the probe (a storage counts from the module that returns it until
  its last tensor is freed), plus the tile input with its normalisation copies (9 floats), the sampler's
  statistics and maps (``5C + 8`` floats), the jackknife groups' sums and replicate maps
  (``G·(2C + 1 + 4)`` floats, ``G = MC_GROUPS``, :mod:`app.maps.replicates`), the blending temporaries
  (``3C + 2`` floats) and the temporaries of finalising a tile-sized block of the band (``5C + 8`` floats).
  For the default model the live outputs peak at 250 B a pixel where PyTorch's profiler sees the allocator
  peak at 239 (probes of 128² to 544²); summing every output as if none were freed, as this rule did before, counted
  1.6 kB and made the tiles a third narrower than the budget allows.
* ``sample`` — per tile pixel and MC sample in a chunk: what :func:`app.engine.samplers.auto_chunk`
  charges (three copies of the cached prefix output and four logits-sized buffers). A tile's budget
  always holds one sample; what is left over goes to larger chunks.
* ``band`` — per pixel of a band (tile rows × padded image width): the blending accumulators
  (``3C + 3`` floats, the feature distance's plane included).

A padded ``H × W`` image is analysed whole when ``(fixed + sample)·H·W`` fits the budget; otherwise
in tiles ``th × tw`` (multiples of the stride) with ``(fixed + sample)·th·tw + band·th·W`` within it.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch
from torch.utils._pytree import tree_leaves

from app.defaults import MC_GROUPS
from app.engine.blending import BandBlender, finalize_bytes_per_pixel
from app.engine.network import SegmentationNet
from app.maps.registry import SAMPLED_MAPS

__all__ = ["MIN_TILE_STRIDES", "TileCost", "choose_tile", "measure_cost"]

MIN_TILE_STRIDES = 4
PROBE_STRIDES = 4
FLOAT = 4


@dataclass(frozen=True)
class TileCost:
    """Bytes per pixel of one analysis (see the module docstring for what each term counts).

    Attributes:
        fixed: Per analysed pixel, whatever the number of samples.
        sample: Per analysed pixel and MC sample held in one chunk.
        band: Per pixel of a blending band.
    """

    fixed: float
    sample: float
    band: float

    def image_bytes(self, height: int, width: int) -> float:
        """Bytes of analysing ``height × width`` whole, one sample per chunk."""
        return (self.fixed + self.sample) * height * width

    def tile_bytes(self, tile: tuple[int, int], width: int) -> float:
        """Bytes of one ``(th, tw)`` tile's analysis plus the band of ``th`` rows of a ``width``-wide image."""
        th, tw = tile
        return self.image_bytes(th, tw) + self.band * th * width

    def chunk_budget(self, budget: int, tile: tuple[int, int], width: int | None = None) -> int:
        """What of ``budget`` is left for MC chunks once a tile's (or, ``width=None``, the whole image's) fixed part is paid."""
        th, tw = tile
        fixed = self.fixed * th * tw + (self.band * th * width if width is not None else 0)
        return max(int(budget - fixed), int(self.sample * th * tw), 1)


def _tensors(value: object) -> list[torch.Tensor]:
    """The tensors in ``value`` and its nested lists and tuples (a dict, such as a torchvision model's output, counts as none of them)."""
    return [t for t in tree_leaves(value, is_leaf=lambda v: isinstance(v, dict)) if isinstance(t, torch.Tensor)]


def measure_cost(net: SegmentationNet, classes: int) -> TileCost:
    """Probe ``net`` once and return its :class:`TileCost`.

    The probe runs in the calling thread; forward passes other threads make on the same network
    meanwhile are not counted (the hooks look at the thread).
    """
    side = PROBE_STRIDES * net.stride
    device = next(iter(net.parameters())).device
    owner = threading.get_ident()
    live: dict[int, int] = {}
    peak = 0

    def record(_module: torch.nn.Module, _args: object, out: object) -> None:
        nonlocal peak
        if threading.get_ident() != owner:
            return
        for t in _tensors(out):
            key = t.untyped_storage().data_ptr()
            if key not in live:
                live[key] = t.untyped_storage().nbytes()
                weakref.finalize(t, live.pop, key, None)
        peak = max(peak, sum(live.values()))

    handles = [module.register_forward_hook(record) for module in net.modules()]
    try:
        with torch.inference_mode():
            x = torch.zeros(1, 3, side, side, device=device)
            cached = net.prefix(x)
            logits = net.tail(cached, 1)
    finally:
        for handle in handles:
            handle.remove()
    pixels = side * side
    activations = peak
    cached_bytes = sum(t.numel() * t.element_size() for t in _tensors(cached))
    replicates = MC_GROUPS * (2 * classes + 1 + len(SAMPLED_MAPS))
    statistics = FLOAT * (9 + (5 * classes + 8) + (3 * classes + 2) + replicates) + finalize_bytes_per_pixel(classes)
    return TileCost(
        fixed=activations / pixels + statistics,
        sample=(3 * cached_bytes + 4 * logits.numel() * FLOAT) / pixels,
        band=BandBlender.nbytes_per_pixel(classes),
    )


def _multiples(stride: int, top: int, bottom: int) -> range:
    """Multiples of ``stride`` from ``top`` down to ``bottom`` (``top`` rounded down)."""
    return range(top - top % stride, bottom - 1, -stride)


def choose_tile(height: int, width: int, cost: TileCost, budget: int, stride: int, band_columns: int | None = None) -> tuple[int, int] | None:
    """The tile for a padded ``height × width`` image, or ``None`` when it is analysed whole.

    The tile is the largest square of side ``s`` (a multiple of ``stride``) that, clipped to the image,
    fits ``budget`` with its band; for an image narrower than ``s`` that is a full-width strip as tall
    as fits. Under a budget too small for any tile, the smallest tile (``4·stride``) is used.

    Args:
        height: Padded rows (a multiple of ``stride``).
        width: Padded columns (a multiple of ``stride``).
        cost: The network's :class:`TileCost`.
        budget: Bytes the whole analysis may take.
        stride: The network's stride.
        band_columns: The widest column strip the blending band spans (:mod:`app.engine.strips`; plus a tile on each
            side); ``None``: the whole width.
    """
    if cost.image_bytes(height, width) <= budget:
        return None
    smallest = MIN_TILE_STRIDES * stride

    def band(s: int) -> int:
        return width if band_columns is None else min(width, band_columns + 2 * s)

    side = next((s for s in _multiples(stride, max(height, width), smallest) if cost.tile_bytes((min(s, height), min(s, width)), band(s)) <= budget), smallest)
    return min(side, height), min(side, width)
