"""``release_free_memory``: free heap pages in the middle of glibc's heap go back to the operating system."""

from __future__ import annotations

import re
from pathlib import Path

from app.engine.free_memory import release_free_memory

BLOCK = 64 * 1024  # below glibc's initial mmap threshold (128 KiB): served from the heap
BLOCKS = 2048


def _rss_kib() -> int:
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def test_free_blocks_between_live_ones_are_returned() -> None:
    """Every other 64 KiB block freed leaves 64 MiB free between live blocks, which ``free`` cannot hand back; the trim does."""
    assert release_free_memory(), "glibc's malloc_trim is expected on the Linux machines this project runs on (CI, Docker)"
    blocks = [bytearray(BLOCK) for _ in range(BLOCKS)]
    for i in range(0, BLOCKS, 2):
        blocks[i] = bytearray()
    before = _rss_kib()
    assert release_free_memory()
    released = before - _rss_kib()
    assert released >= BLOCKS // 2 * BLOCK // 1024 // 2, f"released {released} KiB"
    assert sum(len(b) for b in blocks) == BLOCKS // 2 * BLOCK
