"""Pure tensor kernels compiled with ``torch.compile`` where that works, run eagerly where it does not.

A :class:`Kernel` wraps one pure function. Its first call compiles it (inductor, dynamic shapes: a new tile size does
not recompile), checks the compiled result against the eager one on that call's inputs and returns the compiled one
(so every call of a process uses the same arithmetic and repeats give identical results); any failure — no C++
compiler, an unsupported device, a mismatch — logs one warning and the kernel stays eager for the rest of the process.
Calls of every kernel are serialised by one lock: the compiled kernels already use every core, compilation is not
thread-safe, and the compiler's own deprecation warnings are silenced during compiled calls (under ``-W error`` they
would abort it; the filters are process-wide). Running out of memory is raised, not taken for a compiler failure.
:func:`set_compilation` turns compilation off process-wide (``SEGU_COMPILE_KERNELS=false`` for the server).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["Kernel", "compilation_enabled", "set_compilation"]

_log = logging.getLogger(__name__)
_enabled = True
_LOCK = threading.Lock()


def set_compilation(enabled: bool) -> None:
    """Whether kernels compile (``True``, the default) or always run eagerly; kernels that compiled stay compiled."""
    global _enabled
    _enabled = enabled


def compilation_enabled() -> bool:
    """Whether :class:`Kernel` compiles its function on first use."""
    return _enabled


def _same(a: Any, b: Any, rtol: float, atol: float) -> bool:
    left = a if isinstance(a, tuple | list) else (a,)
    right = b if isinstance(b, tuple | list) else (b,)
    return len(left) == len(right) and all(torch.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True) for x, y in zip(left, right, strict=True))


class Kernel:
    """A pure tensor function, compiled on first use when compilation is on, else (or on failure) eager.

    Args:
        fn: The function; it must not keep state between calls.
        rtol: Relative tolerance of the first call's check against the eager result.
        atol: Absolute tolerance of that check.
        compare: ``(compiled result, eager result) → bool`` in place of that check, for a result that may differ
            legitimately (an arg-max or top-k of near ties).
    """

    def __init__(self, fn: Callable[..., Any], rtol: float = 1e-4, atol: float = 1e-6, compare: Callable[[Any, Any], bool] | None = None) -> None:
        self.fn = fn
        self.rtol, self.atol = rtol, atol
        self.compare = compare
        self.compiled: Callable[..., Any] | None = None
        self.failed = False

    @property
    def mode(self) -> str:
        """``"compiled"`` once compiled and checked, ``"eager"`` otherwise."""
        return "compiled" if self.compiled is not None and not self.failed else "eager"

    def __call__(self, *args: Any) -> Any:
        """``fn(*args)``, through the compiled function when there is one."""
        if self.failed or (not _enabled and self.compiled is None):
            return self.fn(*args)
        with _LOCK:
            if self.compiled is None:
                return self._compile_and_check(args)
            if self.failed:
                return self.fn(*args)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return self.compiled(*args)
            except torch.OutOfMemoryError:
                raise
            except Exception as error:
                self._give_up(error)
                return self.fn(*args)

    def _compile_and_check(self, args: tuple[Any, ...]) -> Any:
        expected = self.fn(*args)
        try:
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            compiled = torch.compile(self.fn, dynamic=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = compiled(*args)
            if not (self.compare(got, expected) if self.compare is not None else _same(got, expected, self.rtol, self.atol)):
                raise RuntimeError("the compiled kernel's result differs from the eager one")
            self.compiled = compiled
        except Exception as error:
            self.compiled = self.fn
            self._give_up(error)
            return expected
        return got

    def _give_up(self, error: BaseException) -> None:
        self.failed = True
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        _log.warning("%s runs eagerly: compiling it failed (%s: %s)", name, type(error).__name__, str(error).splitlines()[0][:200] if str(error) else "")
