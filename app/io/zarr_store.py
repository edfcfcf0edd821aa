"""``maps.zarr``: a full-resolution analysis written band by band to a chunked, compressed Zarr v3 store.

Layout (every map an OME-NGFF 0.5 multiscale image, so OME-Zarr viewers such as napari open ``maps.zarr/<map>``)::

    maps.zarr/                      root group; attributes "seg_uncertainty" (classes, ranges, dtypes, "complete")
      prediction/0                  (H, W) class indices, uint8 for ≤ 256 classes (app.io.npz.label_dtype)
      prediction/1                  the preview: each f×f block's most frequent class (only when f ≥ 3)
      <map>/0                       (H, W) float16 (feature_distance: float32), as maps.npz stores them
      <map>/1                       the preview: f×f block means, in the same dtype (only when f ≥ 3)
      probs, mean_probs, class_variance   (C, H, W) float32, only when asked for (``--save``)

Chunks are ``band × 512`` pixels (``band``: the rows one row of sliding windows finishes, so each band fills whole
chunks) and each is compressed with Blosc's Zstandard at level 5 after byte shuffling. Measured on a 12-megapixel photo
(the maps of ``analyze --full-resolution``): 7.2 bytes a pixel against 9.7 for ``maps.npz``'s deflate, the same values
(level 3: 7.5, level 7: 7.1 at three times the time). The preview level ``1`` (``f = ⌈longest side / 2048⌉``) is stored
only when it costs at most a ninth of level ``0`` (``f ≥ 3``): at ``f = 2`` it would add a quarter to the store.
``zarr.open_group("maps.zarr")["entropy/0"][:]`` reads a map back; so does any Zarr v3 reader.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from app.io.npz import FLOAT32_MAPS, MAP_DTYPE, label_dtype, write_npz
from app.maps.registry import MAP_NAMES

__all__ = [
    "CHUNK_COLUMNS",
    "OME_VERSION",
    "PREVIEW_LEVEL_FACTOR",
    "STORE_NAME",
    "MapStore",
    "StoreArrays",
    "multiscales",
    "read_map",
    "store_bytes",
    "store_npz",
    "store_pixel",
]

STORE_NAME = "maps.zarr"
CHUNK_COLUMNS = 512
OME_VERSION = "0.5"
PREVIEW_LEVEL_FACTOR = 3
_ATTRS = "seg_uncertainty"


def _compressor() -> BloscCodec:
    return BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")


def multiscales(name: str, factor: int) -> dict[str, Any]:
    """The OME-NGFF 0.5 ``ome`` attribute of one map: level ``0`` at full resolution and, when ``factor`` reaches
    :data:`PREVIEW_LEVEL_FACTOR`, level ``1`` ``factor`` times smaller in each axis."""
    levels = [("0", 1)] + ([("1", factor)] if factor >= PREVIEW_LEVEL_FACTOR else [])
    return {
        "version": OME_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
                "datasets": [{"path": path, "coordinateTransformations": [{"type": "scale", "scale": [float(f), float(f)]}]} for path, f in levels],
            }
        ],
    }


class MapStore:
    """A ``maps.zarr`` being written: bands of rows (of a column strip), then previews, then the attributes that mark it complete.

    Args:
        path: The store's folder (created; an existing one is replaced).
        size: ``(H, W)``.
        num_classes: ``C``.
        band_rows: Rows per chunk (a band of the sliding windows).
        save: The ``(C, H, W)`` arrays to keep (:func:`app.io.npz.parse_save`).
        set_sizes: The ``(H, W)`` uint8 conformal set-size arrays to keep (``set_size_10``, …).
    """

    def __init__(self, path: Path, size: tuple[int, int], num_classes: int, band_rows: int, save: Sequence[str] = (), set_sizes: Sequence[str] = ()) -> None:
        self.path = path
        self.size = size
        self.save = tuple(save)
        height, width = size
        rows = max(1, min(band_rows, height))
        cols = min(CHUNK_COLUMNS, width)
        self.root = zarr.open_group(str(path), mode="w", zarr_format=3)
        self.dtypes: dict[str, np.dtype[Any]] = {"prediction": label_dtype(num_classes)}
        self.dtypes.update({name: np.dtype(np.float32) if name in FLOAT32_MAPS else MAP_DTYPE for name in MAP_NAMES})
        self._arrays: dict[str, Any] = {}
        for name, dtype in self.dtypes.items():
            group = self.root.create_group(name)
            self._arrays[name] = group.create_array("0", shape=size, chunks=(rows, cols), dtype=dtype, compressors=_compressor(), fill_value=0)
        for name in set_sizes:
            self.dtypes[name] = np.dtype(np.uint8)
            self._arrays[name] = self.root.create_array(name, shape=size, chunks=(rows, cols), dtype=np.uint8, compressors=_compressor(), fill_value=0)
        for name in self.save:
            self.dtypes[name] = np.dtype(np.float32)
            self._arrays[name] = self.root.create_array(
                name, shape=(num_classes, *size), chunks=(1, rows, cols), dtype=np.float32, compressors=_compressor(), fill_value=0
            )

    def write_band(self, top: int, arrays: Mapping[str, np.ndarray], left: int = 0) -> None:
        """Write rows ``[top, top + rows)`` and columns ``[left, left + cols)`` of every array: maps and labels
        ``(rows, cols)``, class arrays ``(C, rows, cols)``.

        Raises:
            KeyError: an array of the store is missing from ``arrays``.
        """
        for name, target in self._arrays.items():
            band = np.asarray(arrays[name], dtype=self.dtypes[name])
            rows, cols = band.shape[-2:]
            target[..., top : top + rows, left : left + cols] = band

    def write_previews(self, factor: int, previews: Mapping[str, np.ndarray]) -> None:
        """Write each map's level-1 preview (when ``factor`` reaches :data:`PREVIEW_LEVEL_FACTOR`) and its OME-NGFF
        ``multiscales`` attribute."""
        for name in self.dtypes:
            if name not in MAP_NAMES and name != "prediction":
                continue
            group = self.root[name]
            assert isinstance(group, zarr.Group)
            if factor >= PREVIEW_LEVEL_FACTOR:
                preview = np.asarray(previews[name], dtype=self.dtypes[name])
                group.create_array("1", shape=preview.shape, chunks=preview.shape, dtype=preview.dtype, compressors=_compressor(), fill_value=0)[...] = preview
            group.attrs["ome"] = multiscales(name, factor)

    def finish(self, attrs: Mapping[str, Any]) -> None:
        """Record ``attrs`` (with every array's dtype) under the root's ``seg_uncertainty`` attribute, ``complete`` last."""
        self.root.attrs[_ATTRS] = {**attrs, "dtypes": {name: str(dtype) for name, dtype in self.dtypes.items()}, "complete": True}


SET_SIZE_PREFIX = "set_size_"


def read_map(path: Path, name: str, level: int = 0) -> np.ndarray:
    """One array of a finished store: ``name`` at ``level`` (maps and labels), or a class array by its name.

    Raises:
        ValueError: the store was not finished (no ``complete`` attribute), or has no such array.
    """
    root = _open_complete(path)
    return np.asarray(_array(root, name if name not in MAP_NAMES and name != "prediction" else f"{name}/{level}")[...])


def _open_complete(path: Path) -> zarr.Group:
    root = zarr.open_group(str(path), mode="r")
    attrs = root.attrs.get(_ATTRS)
    if not isinstance(attrs, Mapping) or not attrs.get("complete"):
        raise ValueError(f"{path} is not a complete analysis store")
    return root


def store_pixel(path: Path, y: int, x: int) -> tuple[dict[str, float], int, np.ndarray | None]:
    """Every map's value, the label and (when stored) the ``mean_probs`` vector at pixel ``(y, x)`` of a finished store;
    reads one chunk per array."""
    root = _open_complete(path)
    values = {name: float(np.asarray(_array(root, f"{name}/0")[y, x])) for name in MAP_NAMES}
    label = int(np.asarray(_array(root, "prediction/0")[y, x]))
    probs = np.asarray(_array(root, "mean_probs")[:, y, x], dtype=np.float64) if "mean_probs" in root else None
    return values, label, probs


def _array(root: zarr.Group, name: str) -> zarr.Array[Any]:
    node = root[name]
    if not isinstance(node, zarr.Array):
        raise ValueError(f"no array {name!r} in the store")
    return node


class StoreArrays(Mapping[str, np.ndarray]):
    """A finished store's full-resolution arrays as a mapping that reads each one when it is asked for (so
    :func:`app.io.npz.write_npz` holds one of them at a time): ``prediction``, every map, and the class arrays stored."""

    def __init__(self, path: Path, names: Sequence[str] | None = None) -> None:
        self._root = _open_complete(path)
        stored = [n for n in ("probs", "mean_probs", "class_variance") if n in self._root]
        sets = sorted(n for n in self._root.array_keys() if n.startswith(SET_SIZE_PREFIX))
        self._names = list(names) if names is not None else [*MAP_NAMES, "prediction", *sets, *stored]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        plain = name in ("probs", "mean_probs", "class_variance") or name.startswith(SET_SIZE_PREFIX)
        return np.asarray(_array(self._root, name if plain else f"{name}/0")[...])

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def store_bytes(path: Path) -> int:
    """Bytes of a store's files on disk."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def store_npz(path: Path, save: Sequence[str] = ()) -> bytes:
    """The ``maps.npz`` of a finished store: its maps and labels in their stored dtypes, plus the class arrays named in
    ``save``, read one at a time.

    Raises:
        ValueError: ``save`` names a class array the store does not hold.
    """
    stored = [n for n in ("probs", "mean_probs", "class_variance") if n in _open_complete(path)]
    missing = [n for n in save if n not in stored]
    if missing:
        held = ", ".join(stored) or "none"
        raise ValueError(f"this analysis was streamed to a store that keeps no {', '.join(missing)} (it holds: {held})")
    return write_npz(StoreArrays(path, [*MAP_NAMES, "prediction", *save]))
