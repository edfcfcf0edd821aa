"""Cache the deterministic part of a decoder that holds a dropout site, so MC samples run only what follows the site.

smp decoders are called with the encoder's feature list and combine skip features block by block, so the
decoder cannot be cut into a "before" and an "after" module the way a model of stages can. Instead, every
*cacheable* submodule of the decoder — one that the forward pass calls exactly once, that is no ancestor of a
dropout site and that returns no later than the first site (whose dropout a forward hook applies after it) — remembers its output during the deterministic pass
(:func:`recording`) and hands it back, without computing, during the MC passes (:func:`replaying`), expanded to the
pass's ``copies`` sample-major copies. Which submodules are cacheable is found once per network by a probe forward
(:func:`find_cacheable`), keeping the outermost ones.

The cacheable modules consult the cache only inside :func:`installed`, a context manager that gives each of them an
instance ``forward`` and restores the module's own ``forward`` on exit (nested and concurrent blocks share one
installation, counted per module), so the model is left exactly as it was: a copy, an export or a pickle of it
never carries a patched ``forward``. The state lives in a context variable, so concurrent analyses (threads or
tasks) never see each other's cache; outside :func:`recording` / :func:`replaying` the modules run as usual. A batch of one is expanded without copying
(a stride-0 view); larger batches are repeated. Encoder features and cached outputs that no MC pass reads (found by
:func:`needed`) are kept as zero-memory placeholders of the right shape.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils._pytree import tree_map_only

__all__ = ["DecoderCache", "expand_copies", "find_cacheable", "installed", "needed", "placeholder", "recording", "replaying"]


@dataclass
class _State:
    outputs: dict[int, Any] = field(default_factory=dict)
    replay: bool = False
    copies: int = 1


_STATE: contextvars.ContextVar[_State | None] = contextvars.ContextVar("decoder_cache", default=None)


class DecoderCache(NamedTuple):
    """The deterministic pass's encoder features and cacheable outputs (a named tuple, so tree walkers see its tensors).

    Attributes:
        features: The encoder's features, ``(B, C_i, H_i, W_i)`` each (zero placeholders where no MC pass reads them).
        kept: Cacheable module index → its output, as a tuple in module order.
    """

    features: list[torch.Tensor]
    kept: tuple[Any, ...]

    @property
    def outputs(self) -> dict[int, Any]:
        """Cacheable module index → its output."""
        return dict(enumerate(self.kept))


def placeholder(value: Any) -> Any:
    """Zero-memory stand-ins (stride-0 zero views of the same shape) for every tensor in ``value`` (a pytree)."""
    return tree_map_only(torch.Tensor, lambda t: t.new_zeros(()).expand(t.shape), value)


def _is_placeholder(value: torch.Tensor) -> bool:
    return value.numel() > 1 and all(step == 0 for step in value.stride())


def _copies(value: torch.Tensor, copies: int) -> torch.Tensor:
    """``copies`` sample-major copies of ``(B, ...)`` ``value``: ``(copies * B, ...)``."""
    if _is_placeholder(value):
        return value.new_zeros(()).expand(copies * value.shape[0], *value.shape[1:])
    if value.shape[0] == 1:
        return value.expand(copies, *value.shape[1:])
    return value.repeat(copies, *([1] * (value.dim() - 1)))


def expand_copies(value: Any, copies: int) -> Any:
    """``copies`` sample-major copies of every tensor in ``value`` (a view when the batch is one or for placeholders)."""
    if copies == 1:
        return value
    return tree_map_only(torch.Tensor, lambda t: _copies(t, copies), value)


def _cached_forward(index: int, original: Callable[..., Any]) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        state = _STATE.get()
        if state is None:
            return original(*args, **kwargs)
        if state.replay and index in state.outputs:
            return expand_copies(state.outputs[index], state.copies)
        out = original(*args, **kwargs)
        if not state.replay:
            state.outputs[index] = out
        return out

    return forward


@dataclass
class _Installation:
    """One module's patch: how many :func:`installed` blocks hold it, and the instance ``forward`` it replaced (``None``: none)."""

    holders: int
    replaced: Callable[..., Any] | None


_LOCK = threading.Lock()
_INSTALLED: weakref.WeakKeyDictionary[nn.Module, _Installation] = weakref.WeakKeyDictionary()


@contextmanager
def installed(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Make ``modules`` cacheable inside the block: their ``forward`` consults the context (weights and names untouched).

    Module ``i`` records and replays under index ``i``. On exit every module gets its own ``forward`` back (the
    class's, or the instance attribute it had); blocks nested or running in other threads share the installation,
    which the last one to leave removes.

    Args:
        modules: The cacheable modules (:func:`find_cacheable`), always in the same order for one network.
    """
    with _LOCK:
        for index, module in enumerate(modules):
            patch = _INSTALLED.get(module)
            if patch is None:
                patch = _INSTALLED[module] = _Installation(0, module.__dict__.get("forward"))
                module.forward = _cached_forward(index, module.forward)
            patch.holders += 1
    try:
        yield
    finally:
        with _LOCK:
            for module in modules:
                patch = _INSTALLED[module]
                patch.holders -= 1
                if patch.holders == 0:
                    del _INSTALLED[module]
                    if patch.replaced is None:
                        del module.__dict__["forward"]
                    else:
                        module.forward = patch.replaced


def find_cacheable(decoder: nn.Module, run: Callable[[], object], sites: Sequence[nn.Module]) -> list[nn.Module]:
    """The outermost submodules of ``decoder`` that ``run()`` (a forward through it) calls once and that return no later
    than the first dropout site.

    A site's dropout is applied to its output by a forward hook, after its forward, so the site module itself is
    cacheable (its cached output still passes through the hook); its ancestors are not.

    Args:
        decoder: The decoder.
        run: Calls the decoder once (e.g. the whole model on a small input), without dropout active.
        sites: The modules whose output gets dropout.
    """
    order: list[tuple[str, str]] = []
    calls: dict[str, int] = {}
    handles = []
    named = dict(decoder.named_modules())
    for name, module in named.items():
        if not name:
            continue

        def pre(_m: nn.Module, _a: object, n: str = name) -> None:
            order.append(("start", n))
            calls[n] = calls.get(n, 0) + 1

        def post(_m: nn.Module, _a: object, _o: object, n: str = name) -> None:
            order.append(("end", n))

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    try:
        with torch.inference_mode():
            run()
    finally:
        for handle in handles:
            handle.remove()
    site_names = {name for name, module in named.items() if any(module is s for s in sites)}
    starts = {name: i for i, (kind, name) in reversed(list(enumerate(order))) if kind == "start" and name in site_names}
    if starts:
        first = min(starts, key=starts.__getitem__)
        limit = next(i for i, (kind, name) in enumerate(order) if kind == "end" and name == first)
    else:
        limit = len(order) - 1
    ended = {name for kind, name in order[: limit + 1] if kind == "end"}
    ancestors = {name for name in named if any(s.startswith(name + ".") for s in site_names)}
    chosen = sorted(n for n in ended if calls.get(n) == 1 and n not in ancestors)
    outermost = [n for n in chosen if not any(n.startswith(other + ".") for other in chosen)]
    return [named[n] for n in outermost]


def needed(run: Callable[[list[Any], dict[int, Any]], torch.Tensor], features: list[Any], outputs: dict[int, Any]) -> tuple[set[int], set[int]]:
    """Which encoder features and cached outputs an MC pass reads, found by poisoning each with NaN in turn.

    ``run(features, outputs)`` replays the decoder (1 copy) with the given values. An item whose NaN stand-in reaches
    the output is needed; the others are replaced by :func:`placeholder` views in the cache, which costs nothing.
    A final replay with every unneeded item as a zero placeholder must reproduce the reference exactly, or every
    item is kept (code outside submodules may read a tensor without passing NaN on).
    """
    reference = run(features, outputs)

    def poisoned(value: Any) -> Any:
        return tree_map_only(torch.Tensor, lambda t: t.new_full((), float("nan")).expand(t.shape) if t.is_floating_point() else t, value)

    need_f = {i for i in range(len(features)) if torch.isnan(run([poisoned(f) if j == i else f for j, f in enumerate(features)], outputs)).any()}
    need_o = {k for k in outputs if torch.isnan(run(features, {**outputs, k: poisoned(outputs[k])})).any()}
    trial_f = [f if i in need_f else placeholder(f) for i, f in enumerate(features)]
    trial_o = {k: v if k in need_o else placeholder(v) for k, v in outputs.items()}
    if not torch.equal(run(trial_f, trial_o), reference):
        return set(range(len(features))), set(outputs)
    return need_f, need_o


@contextmanager
def recording() -> Iterator[dict[int, Any]]:
    """Run the deterministic pass inside: every cacheable module's output is kept in the yielded dict."""
    state = _State()
    token = _STATE.set(state)
    try:
        yield state.outputs
    finally:
        _STATE.reset(token)


@contextmanager
def replaying(outputs: dict[int, Any], copies: int) -> Iterator[None]:
    """Run MC passes of ``copies`` samples inside: cacheable modules return their recorded outputs, expanded."""
    token = _STATE.set(_State(outputs=outputs, replay=True, copies=copies))
    try:
        yield
    finally:
        _STATE.reset(token)
