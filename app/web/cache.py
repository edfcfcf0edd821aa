"""A bounded, thread-safe in-memory store of recent analyses, so their PNGs, NPZ and pixel values can be fetched by id.

Bounded three ways: at most ``max_entries`` analyses and ``max_bytes`` of arrays (least recently used evicted
first), and each one expires ``ttl`` seconds after it was last used. An analysis larger than ``max_bytes`` on its
own is not kept. An analysis streamed to a ``maps.zarr`` (a full-resolution one beyond ``stream_pixels``) keeps its
previews in memory and its store on disk, under the cache's store folder; its disk bytes count against ``max_bytes``
too, and the store is removed when the entry goes.

With API keys on, an analysis belongs to the key that made it (:attr:`CachedAnalysis.owner`): asked for by another key
it is not there, exactly as an id that never existed (and that asking neither refreshes nor reorders it).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.web.security.api_keys import same_owner

__all__ = ["AnalysisCache", "CachedAnalysis"]

_NOBODY = "\x00no analysis"  # the owner an unknown id is compared with (no real owner tag)


@dataclass
class CachedAnalysis:
    """What the id endpoints serve of one analysis.

    Attributes:
        arrays: Every array at full precision (:func:`app.io.npz.full_arrays`; a download converts them:
            :func:`app.io.npz.archive_arrays`), plus ``error`` (uint8 codes) when scored against a mask.
        class_names: Class names in label order.
        class_colours: Class colours as ``#rrggbb``.
        filename: Upload name, for download names.
        owner: The API key's owner tag that made it (:func:`~app.web.security.api_keys.current_owner`); ``None`` with keys off.
        expires_at: Clock time after which it is gone (refreshed on every use).
        store: For an analysis streamed to a ``maps.zarr`` (:mod:`app.io.zarr_store`): its folder, removed with the entry;
            ``arrays`` then hold its previews (``prediction`` and the maps, float32). ``None``: ``arrays`` are everything.
        size: ``(H, W)`` of a stored analysis (its previews are smaller).
        disk_bytes: The store's bytes on disk, counted with the arrays'.
        set_thresholds: ``alpha`` → threshold ``t`` of the conformal prediction sets (empty without), for the pixel's sets.
        class_masks: ``(class, alpha, threshold)`` of the calibrated class masks, for their PNGs.
    """

    arrays: dict[str, np.ndarray]
    class_names: list[str]
    class_colours: list[str]
    filename: str | None = None
    owner: str | None = None
    expires_at: float = field(default=0.0)
    store: Path | None = None
    size: tuple[int, int] | None = None
    disk_bytes: int = 0
    set_thresholds: dict[float, float] = field(default_factory=dict)
    class_masks: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        """Bytes of its arrays (and of its store on disk)."""
        return sum(int(a.nbytes) for a in self.arrays.values()) + self.disk_bytes

    @property
    def height(self) -> int:
        """Rows of the analysed image."""
        return self.size[0] if self.size is not None else int(self.arrays["prediction"].shape[0])

    @property
    def width(self) -> int:
        """Columns of the analysed image."""
        return self.size[1] if self.size is not None else int(self.arrays["prediction"].shape[1])

    def discard(self) -> None:
        """Remove its store, if any (the entry left the cache)."""
        if self.store is not None:
            shutil.rmtree(self.store, ignore_errors=True)


class AnalysisCache:
    """Recent analyses by id, least recently used first out.

    Args:
        max_entries: Most analyses kept.
        max_bytes: Most array bytes kept, all analyses together.
        ttl: Seconds an analysis stays after its last use.
        clock: Monotonic time source (tests pass their own).
        id_prefix: Start of every id (e.g. the Ray Serve replica that holds the analysis).
    """

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        id_prefix: str = "",
        store_root: Path | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        self.id_prefix = id_prefix
        self._entries: OrderedDict[str, CachedAnalysis] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._store_root = store_root
        self._own_root: Path | None = None

    def new_store(self) -> Path:
        """A fresh path for an analysis's store: under ``store_root``, or under a temporary folder of this cache's own
        (made on first use, removed by :meth:`close`). Whoever writes it removes it unless :meth:`put` keeps it."""
        with self._lock:
            if self._store_root is None and self._own_root is None:
                self._own_root = Path(tempfile.mkdtemp(prefix="segu-stores-"))
            root = self._store_root if self._store_root is not None else self._own_root
        assert root is not None
        root.mkdir(parents=True, exist_ok=True)
        return root / f"{secrets.token_hex(8)}.zarr"

    def holds(self, store: Path) -> bool:
        """Whether an entry kept now owns ``store``."""
        with self._lock:
            return any(entry.store == store for entry in self._entries.values())

    def close(self) -> None:
        """Drop every entry (removing their stores) and this cache's own temporary folder."""
        with self._lock:
            for key in list(self._entries):
                self._drop(key)
            if self._own_root is not None:
                shutil.rmtree(self._own_root, ignore_errors=True)
                self._own_root = None

    def __len__(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Array bytes held now."""
        with self._lock:
            return self._bytes

    def put(self, entry: CachedAnalysis) -> str | None:
        """Keep ``entry``; its new id, or ``None`` when it alone is larger than ``max_bytes`` (its store is then removed)."""
        size = entry.nbytes
        if size > self.max_bytes or self.max_entries < 1:
            entry.discard()
            return None
        key = self.id_prefix + secrets.token_urlsafe(12)
        with self._lock:
            now = self.clock()
            self._expire(now)
            entry.expires_at = now + self.ttl
            self._entries[key] = entry
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
        return key

    def get(self, key: str, owner: str | None = None) -> CachedAnalysis | None:
        """The analysis ``key`` of ``owner`` (now the most recently used, its expiry pushed back).

        ``None`` if expired, unknown or another owner's: those three are one answer, taking one dictionary look-up
        and one constant-time owner comparison each.
        """
        with self._lock:
            now = self.clock()
            self._expire(now)
            entry = self._entries.get(key)
            mine = same_owner(entry.owner if entry is not None else _NOBODY, owner)
            if entry is None or not mine:
                return None
            entry.expires_at = now + self.ttl
            self._entries.move_to_end(key)
            return entry

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.nbytes
        entry.discard()

    def _expire(self, now: float) -> None:
        for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
            self._drop(key)
