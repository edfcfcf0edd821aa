"""A deep ensemble: several networks with the same classes, run member by member.

An :class:`EnsembleNet` is a :class:`~app.engine.network.SegmentationNet` so that it travels wherever a network does
(a bundle, an analyser, ``.to(device)``, ``.eval()``), but it has no single forward pass: the pass runner
(:func:`app.engine.passes.run_passes`) runs each member, with its own prefix caching and fast head, and pools
their samples. Calling ``prefix``, ``tail`` or ``forward`` on the ensemble itself is an error, so no code path
can silently use one member for the whole ensemble.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from app.engine.network import SegmentationNet

__all__ = ["EnsembleNet", "members_of", "single_network"]

_WHOLE = "an ensemble has no single forward pass; run it member by member with app.engine.passes.run_passes"


class EnsembleNet(SegmentationNet):
    """Member networks run one after the other.

    Args:
        members: Two or more networks (each with its own dropout sites).

    Raises:
        ValueError: fewer than two members, or a member that is itself an ensemble.
    """

    def __init__(self, members: Sequence[SegmentationNet]) -> None:
        nn.Module.__init__(self)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        if any(isinstance(m, EnsembleNet) for m in members):
            raise ValueError("an ensemble's members must be single networks, not ensembles")
        self.members = nn.ModuleList(members)
        self.model = self.members
        self.sites: tuple[str, ...] = ()
        self.dropouts = nn.ModuleList()
        self.staged = False
        self.cacheable: list[nn.Module] = []
        self.stride = math.lcm(*(m.stride for m in members))

    @property
    def networks(self) -> tuple[SegmentationNet, ...]:
        """The members, in card order."""
        return tuple(m for m in self.members if isinstance(m, SegmentationNet))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(_WHOLE)

    def prefix(self, x: torch.Tensor) -> Any:
        raise RuntimeError(_WHOLE)

    def tail(self, cached: Any, copies: int) -> torch.Tensor:
        raise RuntimeError(_WHOLE)


def members_of(net: SegmentationNet) -> tuple[SegmentationNet, ...]:
    """The networks a pass runner runs: an ensemble's members, or ``net`` alone."""
    return net.networks if isinstance(net, EnsembleNet) else (net,)


def single_network(net: SegmentationNet) -> SegmentationNet:
    """``net`` itself, which must be one network.

    Raises:
        RuntimeError: ``net`` is an ensemble (it has no single forward pass).
    """
    if isinstance(net, EnsembleNet):
        raise RuntimeError(_WHOLE)
    return net
