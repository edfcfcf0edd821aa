"""Seeded keep-masks for MC dropout: independent (``"iid"``) or balanced across samples (``"stratified"``).

Both schemes give every sample's mask exactly the distribution of textbook dropout: each unit (a channel of an image
in ``"channel"`` mode, an element in ``"element"`` mode) is dropped with probability ``rate``, independently of every
other unit. They differ only in how the samples of one analysis relate to each other:

- ``"iid"``: sample ``t`` has its own generator, seeded by ``(seed, t, site)``; samples are independent.
- ``"stratified"``: samples come in blocks of ``L`` consecutive ids (:func:`block_length`: the shortest block in
  which ``rate × L`` is a whole number, e.g. 5 for ``rate = 0.2``). Within a block each unit is dropped in exactly
  ``k`` of the ``L`` samples, ``k = ⌊rate·L⌋`` or ``⌈rate·L⌉`` (the latter with probability ``frac(rate·L)``, so
  ``E[k] = rate·L``), at positions drawn uniformly at random per unit, from a generator seeded by
  ``(seed, block, site)``. Every position of a block is therefore dropped with probability exactly ``rate``
  (unbiased marginals, units independent), while the samples of a block are negatively correlated: a unit dropped in
  one is less likely dropped in the next. The mask-count noise of a linear head cancels in each full block, which
  removes most of the seed-to-seed noise of ``p̄`` and of the maps; blocks are independent of each other.

Either way a sample's mask depends on ``(seed, sample id, site)`` only, never on chunking, the number of samples
asked for, thread interleaving or the global RNG.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

__all__ = ["MASK_SCHEMES", "block_length", "image_seed", "keep_masks", "mask_seed"]

MASK_SCHEMES = ("stratified", "iid")
MAX_BLOCK = 20
_STRATIFIED_STREAM = 1


def image_seed(seed: int, identity: str) -> int:
    """A run seed and an image's identity (its file name, say) → that image's mask seed, in ``[0, 2**32)``.

    Stable across processes and platforms (BLAKE2b, never Python's salted ``hash``), so a folder evaluated with the
    same run seed gets the same masks, while different images get independent ones and the MC error averages out
    over the data set instead of repeating the same ``T`` masks on every image.
    """
    digest = hashlib.blake2b(f"{int(seed)}\x00{identity}".encode(), digest_size=4, person=b"segu-image-seed").digest()
    return int.from_bytes(digest, "little")


def mask_seed(seed: int, sample: int, site: int, stream: int = 0) -> int:
    """A well-mixed 63-bit generator seed for one (request seed, sample or block, site); ``stream`` separates schemes."""
    entropy = [seed & 0xFFFFFFFFFFFF, sample, site] + ([stream] if stream else [])
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


def block_length(rate: float) -> int:
    """Samples per stratified block: the shortest ``L <= 20`` with ``rate × L`` whole, else 20."""
    for length in range(1, MAX_BLOCK + 1):
        if abs(rate * length - round(rate * length)) < 1e-9:
            return length
    return MAX_BLOCK


def _iid_keep(seed: int, sample: int, site: int, rate: float, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    gen = torch.Generator(device=device).manual_seed(mask_seed(seed, sample, site))
    return torch.rand(shape, generator=gen, device=device) >= rate


def _block_drops(seed: int, block: int, site: int, rate: float, length: int, units: int, device: torch.device) -> torch.Tensor:
    """``(units, length)`` booleans: which samples of ``block`` drop each unit."""
    gen = torch.Generator(device=device).manual_seed(mask_seed(seed, block, site, _STRATIFIED_STREAM))
    order = torch.rand(units, length, generator=gen, device=device).argsort(dim=1)
    low = math.floor(rate * length + 1e-9)
    count = low + (torch.rand(units, 1, generator=gen, device=device) < rate * length - low).long()
    rank = torch.arange(length, device=device).expand(units, length)
    return torch.zeros(units, length, dtype=torch.bool, device=device).scatter_(1, order, rank < count)


def keep_masks(
    seed: int, sample_ids: tuple[int, ...], site: int, rate: float, shape: tuple[int, ...], device: torch.device, scheme: str = "stratified"
) -> list[torch.Tensor]:
    """One boolean keep-mask of ``shape`` per sample id (``True``: kept).

    Raises:
        ValueError: an unknown ``scheme``.
    """
    if scheme == "iid":
        return [_iid_keep(seed, t, site, rate, shape, device) for t in sample_ids]
    if scheme != "stratified":
        raise ValueError(f"mask scheme must be one of {MASK_SCHEMES}, got {scheme!r}")
    length = block_length(rate)
    units = math.prod(shape)
    blocks = {b: _block_drops(seed, b, site, rate, length, units, device) for b in sorted({t // length for t in sample_ids})}
    return [~blocks[t // length][:, t % length].view(shape) for t in sample_ids]
