"""Dynamic batching of the deterministic prefix across concurrent analyses.

Like LitServe's ``max_batch_size``/``batch_timeout`` and Ray Serve's ``@serve.batch``: requests waiting at
the same time share one pass of the network. Only the deterministic prefix (the stages before the first
dropout site, the expensive part) is batched; every analysis then runs its own MC tail on its own slice of
the batch's output, with its own seed, options and cancel token, so dropout masks are exactly the ones an
analysis alone would draw.

Each analysis runs in a worker thread of its own (one per running request). When it reaches its prefix it
hands its padded, normalised input to :meth:`PrefixBatcher.prefix`. Inputs of the same shape, dtype and
device form a batch; the first to arrive (the batch's leader) waits until the batch holds
``max_batch_size`` inputs or ``max_wait`` seconds have passed, then runs the batch and hands every member
its rows. As with Ray Serve's ``batch_wait_timeout_s``, a request that finds nobody to batch with pays
``max_wait`` of latency; with ``max_batch_size=1`` nothing waits.

Cancellation: members whose token is cancelled before the batch runs are left out of it (they raise
:class:`~app.engine.cancel.AnalysisCancelled`); the leader runs the batch for the others even when its own
request is the one cancelled. Each member then meets its own cancellation points in its tail.

Results: an smp network in eval mode treats the images of a batch independently (BatchNorm uses its
running statistics, dropout is off in the prefix), so batched results equal unbatched ones up to the
rounding of batched convolutions: on CPU the prefix outputs differ by at most a few 1e-6 (often not at
all), which the softmax and the MC statistics carry through at the same order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch.utils._pytree import tree_map_only

from app.engine.cancel import AnalysisCancelled, CancelToken
from app.engine.network import SegmentationNet

__all__ = ["BatchObserver", "PrefixBatcher"]

BatchObserver = Callable[[int], None]
_BATCHABLE_STAGES = ("decoder", "head")


@dataclass(eq=False)
class _Member:
    x: torch.Tensor
    cancel: CancelToken | None
    value: Any = None
    error: BaseException | None = None


@dataclass(eq=False)
class _Batch:
    members: list[_Member] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


def _rows(cached: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of every tensor in a prefix output (a pytree: its containers' types kept)."""
    return tree_map_only(torch.Tensor, lambda t: t[start:stop], cached)


class PrefixBatcher:
    """Run the deterministic prefix of concurrent analyses of the same shape as one batch.

    Args:
        net: The network (eval mode).
        max_batch_size: Most inputs per batch; 1 disables batching (every prefix runs at once, alone).
        max_wait: Longest a batch's first input waits for others, in seconds.
        observe: Called with the size of every batch run (1 for an analysis that runs alone), e.g. a metrics hook.
    """

    def __init__(self, net: SegmentationNet, max_batch_size: int = 1, max_wait: float = 0.0, observe: BatchObserver | None = None) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait}")
        self.net = net
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.observe = observe
        self._open: dict[tuple[object, ...], _Batch] = {}
        self._cond = threading.Condition()

    @property
    def enabled(self) -> bool:
        """Whether prefixes are batched: a batch may hold more than one input and the network has a prefix worth sharing."""
        return self.max_batch_size > 1 and self.net.first_stochastic_stage in _BATCHABLE_STAGES

    @property
    def waiting(self) -> int:
        """Inputs waiting in batches that have not run yet."""
        with self._cond:
            return sum(len(batch.members) for batch in self._open.values())

    def runner(self, cancel: CancelToken | None = None) -> Callable[[torch.Tensor], Any]:
        """:meth:`prefix` for one analysis with its ``cancel`` token, as :class:`~app.engine.sampling.SamplingOptions` takes it."""
        return partial(self.prefix, cancel=cancel)

    def alone(self) -> None:
        """Note an analysis that runs without the batcher (e.g. in sliding windows): a batch of one."""
        self._observe(1)

    def prefix(self, x: torch.Tensor, cancel: CancelToken | None = None) -> Any:
        """``net.prefix(x)``, run in a batch with other analyses' inputs of the same shape when batching is on.

        Args:
            x: ``(1, 3, H, W)`` padded, normalised input (``(B, 3, H, W)`` counts as one member of ``B`` rows).
            cancel: The analysis's token; once cancelled before its batch runs, the input is left out.

        Raises:
            app.engine.cancel.AnalysisCancelled: ``cancel`` was cancelled before the batch ran.
        """
        if not self.enabled:
            self._observe(int(x.shape[0]))
            return self.net.prefix(x)
        key = (tuple(x.shape), x.dtype, x.device)
        member = _Member(x, cancel)
        with self._cond:
            batch = self._open.get(key)
            leader = batch is None
            if batch is None:
                batch = self._open[key] = _Batch()
            batch.members.append(member)
            if len(batch.members) >= self.max_batch_size:
                del self._open[key]
            self._cond.notify_all()
            if leader:
                deadline = time.monotonic() + self.max_wait
                while len(batch.members) < self.max_batch_size and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                if self._open.get(key) is batch:
                    del self._open[key]
        if leader:
            self._run(batch)
        else:
            batch.done.wait()
        if member.error is not None:
            raise member.error
        return member.value

    def _run(self, batch: _Batch) -> None:
        """Run a closed batch's live members as one pass and give each its rows (or the failure)."""
        live = []
        for member in batch.members:
            if member.cancel is not None and member.cancel.expired():
                member.error = AnalysisCancelled(member.cancel.reason or "cancelled")
            else:
                live.append(member)
        try:
            if live:
                inputs = live[0].x if len(live) == 1 else torch.cat([member.x for member in live])
                cached = self.net.prefix(inputs)
                self._observe(int(inputs.shape[0]))
                start = 0
                for member in live:
                    stop = start + int(member.x.shape[0])
                    member.value = cached if len(live) == 1 else _rows(cached, start, stop)
                    start = stop
        except BaseException as exc:
            for member in live:
                member.error = exc
        finally:
            batch.done.set()

    def _observe(self, size: int) -> None:
        if self.observe is not None:
            self.observe(size)
