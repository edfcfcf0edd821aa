"""Hand the C allocator's free memory back to the operating system after the large, short-lived buffers of an analysis.

glibc's ``malloc`` serves blocks below its mmap threshold from its heaps, and that threshold rises (up to 32 MiB) each
time a larger mmapped block is freed; so after a full-resolution analysis the tiles' tensors, the band's temporaries
and the PNG encoder's buffers leave tens of megabytes free but still resident, and the next step's peak adds to them.
:func:`release_free_memory` calls ``malloc_trim(0)``, which returns every free page of the heaps. Elsewhere (musl,
macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache
from typing import Any

__all__ = ["release_free_memory"]


@cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or ``None`` where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, "malloc_trim", None)
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return the allocator's free heap pages to the operating system; whether it could (glibc only)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
