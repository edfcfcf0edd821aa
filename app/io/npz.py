"""What ``maps.npz`` holds, in which dtypes, and how it is written (deflated; plain ``numpy.load`` reads it).

By default the archive holds the per-pixel maps and the label map only:

- ``prediction``: class index, ``uint8`` (at most 256 classes), ``uint16`` (at most 65 536) or ``int32``;
- every map of :data:`app.maps.registry.MAPS` as ``(H, W)`` ``float16``, except those in :data:`FLOAT32_MAPS`;
- with conformal sets, each level's set sizes ``set_size_NN`` (alpha in hundredths) as ``uint8``.

``float16`` keeps 11 significant bits: a normal value ``x`` is stored with an error of at most ``2^-11 |x|``
(``2^-25`` absolute below ``2^-14``, where values are subnormal). Measured on a photo (``python
benchmarks/output_size.py``), that rounding is 0.07–0.6 % of the sampled maps' per-pixel MC standard deviation (RMS over
the pixels), and for ``confidence`` (one deterministic pass, no MC error) below a tenth of the MC-dropout spread
of the same probability (``sqrt(variance)``) at 99 % of the pixels. ``feature_distance`` stays ``float32``: it is
a percentile whose levels are spaced down to 2.4e-7 near 1 (:func:`app.maps.density.quantile_levels`), where
out-of-distribution pixels fall; the largest ``float16`` below 1 is ``1 - 2^-11``, so the pixels beyond the
99.95th percentile would collapse into two values (``1 - 2^-11`` and 1).

The ``(C, H, W)`` arrays (:data:`RAW_ARRAYS`: ``probs``, ``mean_probs``, ``class_variance``, ``float32``) are added
only when asked for (:func:`parse_save`): at 12 megapixels and 5 classes they are 720 MB uncompressed.
Pure functions of arrays; the only I/O is the archive's bytes.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from app.maps.registry import MAP_NAMES, MAPS, set_size_name

if TYPE_CHECKING:
    from app.engine.analysis import Analysis  # imports torch: only for types, so ``analyze --help`` stays fast

__all__ = [
    "FLOAT32_MAPS",
    "MAP_DTYPE",
    "RAW_ARRAYS",
    "SAVE_ALL",
    "archive_arrays",
    "array_dtypes",
    "full_arrays",
    "label_dtype",
    "npz_arrays",
    "npz_bytes",
    "npz_sources",
    "parse_save",
    "set_size_arrays",
    "write_npz",
]

RAW_ARRAYS: tuple[str, ...] = ("probs", "mean_probs", "class_variance")
SAVE_ALL = "all"
MAP_DTYPE = np.dtype(np.float16)
FLOAT32_MAPS: frozenset[str] = frozenset({"feature_distance"})
_NPZ_DATE = (1980, 1, 1, 0, 0, 0)


def label_dtype(num_classes: int) -> np.dtype[np.integer]:
    """The smallest unsigned dtype of the class indices of ``num_classes`` classes (``int32`` beyond 65 536)."""
    if num_classes <= 256:
        return np.dtype(np.uint8)
    if num_classes <= 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def parse_save(text: str | Iterable[str]) -> tuple[str, ...]:
    """The ``(C, H, W)`` arrays asked for, in :data:`RAW_ARRAYS` order: comma-separated names, or ``all``.

    An empty string or list asks for none. Names may repeat and carry spaces.

    Raises:
        ValueError: an unknown name, naming the known ones.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    names = {item.strip() for item in items} - {""}
    unknown = sorted(names - {*RAW_ARRAYS, SAVE_ALL})
    if unknown:
        raise ValueError(f"unknown array {', '.join(map(repr, unknown))} for maps.npz; choose from {', '.join((*RAW_ARRAYS, SAVE_ALL))} (comma-separated)")
    if SAVE_ALL in names:
        return RAW_ARRAYS
    return tuple(name for name in RAW_ARRAYS if name in names)


def full_arrays(analysis: Analysis) -> dict[str, np.ndarray]:
    """Fresh copies of every array an archive can hold, at full precision: ``float32`` maps and ``(C, H, W)`` arrays,
    and the label map in :func:`label_dtype`."""
    arrays: dict[str, np.ndarray] = {spec.name: analysis.maps[spec.name].astype(np.float32) for spec in MAPS}
    arrays.update(
        prediction=analysis.prediction.astype(label_dtype(analysis.num_classes)),
        mean_probs=analysis.mean_probs.astype(np.float32),
        probs=analysis.probs.astype(np.float32),
        class_variance=analysis.class_variance.astype(np.float32),
    )
    arrays.update(set_size_arrays(analysis))
    return arrays


def set_size_arrays(analysis: Analysis) -> dict[str, np.ndarray]:
    """The analysis's conformal set sizes by archive name (``set_size_10``, …; uint8), none without sets."""
    if analysis.sets is None:
        return {}
    return {set_size_name(alpha): np.asarray(sizes, dtype=np.uint8) for alpha, sizes in analysis.sets.sizes.items()}


def archive_arrays(arrays: Mapping[str, np.ndarray], save: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """The arrays of an archive, in its dtypes, from :func:`full_arrays` (plus any other arrays, e.g. ``error`` codes).

    Maps become :data:`MAP_DTYPE` (those in :data:`FLOAT32_MAPS` stay ``float32``); :data:`RAW_ARRAYS` are kept,
    as ``float32``, only when named in ``save``; every other array is kept as it is.
    """
    kept = set(save)
    out: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if name in RAW_ARRAYS:
            if name in kept:
                out[name] = np.asarray(array, dtype=np.float32)
        elif name in MAP_NAMES:
            out[name] = np.asarray(array, dtype=_map_dtype(name))
        else:
            out[name] = np.asarray(array)
    return out


def npz_sources(analysis: Analysis, save: Iterable[str] = ()) -> tuple[dict[str, np.ndarray], dict[str, np.dtype[Any]]]:
    """The analysis's own arrays its archive holds (no copies), in the order :func:`archive_arrays` of :func:`full_arrays`
    gives them, and the dtype each is stored in (:func:`write_npz` converts them one at a time as it writes).

    The ``(C, H, W)`` arrays are only read when named in ``save``, so an analysis run without them is archived by default.

    Raises:
        app.engine.analysis.ClassArraysNotKept: ``save`` names an array the analysis did not keep.
    """
    kept = set(save)
    arrays: dict[str, np.ndarray] = {spec.name: analysis.maps[spec.name] for spec in MAPS}
    dtypes: dict[str, np.dtype[Any]] = {name: _map_dtype(name) for name in arrays}
    arrays["prediction"], dtypes["prediction"] = analysis.prediction, label_dtype(analysis.num_classes)
    for name in ("mean_probs", "probs", "class_variance"):  # full_arrays' order
        if name in kept:
            arrays[name], dtypes[name] = getattr(analysis, name), np.dtype(np.float32)
    for name, sizes in set_size_arrays(analysis).items():
        arrays[name], dtypes[name] = sizes, np.dtype(np.uint8)
    if analysis.adversarial is not None:
        from app.io.adversarial_files import adversarial_arrays

        for name, array in adversarial_arrays(analysis.adversarial, label_dtype(analysis.num_classes)).items():
            arrays[name], dtypes[name] = array, array.dtype
    return arrays, dtypes


def npz_arrays(analysis: Analysis, save: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """The arrays of an analysis's archive in their dtypes: what :func:`archive_arrays` of :func:`full_arrays` gives,
    converted straight from the analysis (:func:`npz_sources`; no float32 copy of every array first)."""
    arrays, dtypes = npz_sources(analysis, save)
    return {name: np.asarray(array, dtype=dtypes[name]) for name, array in arrays.items()}


def _map_dtype(name: str) -> np.dtype[Any]:
    """A map's archive dtype: :data:`MAP_DTYPE`, or ``float32`` for :data:`FLOAT32_MAPS`."""
    return np.dtype(np.float32) if name in FLOAT32_MAPS else MAP_DTYPE


def array_dtypes(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Name → dtype name (``"float16"``, ``"uint8"``, …) of each array, for ``analysis.json``."""
    return {name: str(array.dtype) for name, array in arrays.items()}


def write_npz(arrays: Mapping[str, np.ndarray], dtypes: Mapping[str, np.dtype[Any]] | None = None) -> bytes:
    """An ``.npz`` of ``arrays``, every member deflated (as :func:`numpy.savez_compressed` writes), with fixed dates so
    the same arrays give the same bytes.

    ``dtypes``: name → the dtype an array is stored in, converted as that member is written, so one converted copy is
    alive at a time (arrays not named are stored as they are).
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_NPZ_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array, dtype=(dtypes or {}).get(name)), allow_pickle=False)
    return buf.getvalue()


def npz_bytes(analysis: Analysis, save: Iterable[str] = ()) -> bytes:
    """The ``.npz`` of an analysis: :func:`npz_sources` written by :func:`write_npz` (what :func:`npz_arrays` holds)."""
    return write_npz(*npz_sources(analysis, save))
