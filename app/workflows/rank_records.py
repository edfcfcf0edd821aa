"""What ``rank`` keeps of each analysed image, on disk, so an interrupted run continues where it stopped.

A record is ``records/<key>.json`` (written whole under a unique temporary name, then renamed into place) with every
map's image mean and MC error, the image's embedding when one was asked for, and where its thumbnails (input,
prediction, every map) and predicted labels are. ``key`` hashes the input's path; a record is reused only when it
describes a successful analysis, its thumbnails and labels are still there, and the file's size and modification time,
the analysis settings, the model bundle (its card and files) and the record format all still match.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.engine.analysis import Analysis
from app.maps.registry import get_map

__all__ = [
    "BY_ALIASES",
    "ImageRecord",
    "atomic_write",
    "bundle_fingerprint",
    "load_record",
    "record_key",
    "resolve_by",
    "save_record",
    "score_of",
    "source_stamp",
]

BY_ALIASES = {"mi": "mutual_information", "least_confidence": "confidence"}
RECORDS = "records"
LABELS = "labels"
THUMBS = "thumbs"
FORMAT = 2
"""The record format; records of another format are analysed again."""


def resolve_by(by: str) -> str:
    """The map name behind a ``--by`` value (``mi`` → ``mutual_information``).

    Raises:
        KeyError: not a map (the message lists them).
    """
    return get_map(BY_ALIASES.get(by, by)).name


def score_of(analysis: Analysis, by: str) -> tuple[float, float | None]:
    """The image-level score of map ``by`` (higher = less trustworthy: ``1 − mean`` for softmax confidence) and its MC
    standard error (``None`` when the analysis has none, e.g. one sample)."""
    score = float(get_map(by).oriented(np.mean(analysis.maps[by], dtype=np.float64)))
    error = analysis.mean_errors.get(by) if analysis.mean_errors else None
    return score, (None if error is None or not np.isfinite(error) else float(error))


@dataclass
class ImageRecord:
    """One image of a ranking run.

    Attributes:
        file: The input path.
        stamp: :func:`source_stamp` of the file and settings it was analysed with.
        status: ``ok`` or ``failed``.
        error: Why it failed.
        means: Every map's image mean (the maps the model computes).
        errors: Every map's MC standard error of its mean (``None``: unknown).
        embedding: :func:`~app.engine.image_embedding.image_embedding` of the analysed image (empty until asked for).
        size: ``(width, height)`` of the input.
        thumbs: Thumbnail name (``input``, ``prediction``, ``map:<name>``) → file name under the run's ``thumbs/``.
        labels: File name of the predicted labels (8- or 16-bit single-channel PNG at the analysed size) under ``labels/``.
    """

    file: str
    stamp: str
    status: str = "ok"
    error: str = ""
    means: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float | None] = field(default_factory=dict)
    embedding: list[float] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)
    thumbs: dict[str, str] = field(default_factory=dict)
    labels: str = ""

    def score(self, by: str) -> tuple[float, float | None]:
        """The image-level score of map ``by`` (higher = less trustworthy; NaN when failed or not computed) and its error."""
        if self.status != "ok" or by not in self.means:
            return float("nan"), None
        return float(get_map(by).oriented(self.means[by])), self.errors.get(by)

    def predicted_labels(self, root: Path) -> np.ndarray:
        """The predicted labels, ``(H, W)`` int64 at the analysed size."""
        with Image.open(root / LABELS / self.labels) as image:
            return np.asarray(image, dtype=np.int64)


def record_key(file: Path) -> str:
    """A file name for ``file``'s record: a hash of its absolute path."""
    return hashlib.sha256(os.fsencode(str(file.resolve()))).hexdigest()[:20]


def bundle_fingerprint(card_json: str, folder: Path) -> str:
    """What identifies a model bundle's state: its card and the size and modification time of every file in its folder."""
    files = sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(json.dumps([card_json, files]).encode()).hexdigest()[:20]


def source_stamp(file: Path, settings: dict[str, Any]) -> str:
    """What must not change for a record to be reused: the file's size and mtime, the settings and the record format.

    Raises:
        OSError: the file cannot be read.
    """
    info = file.stat()
    return hashlib.sha256(json.dumps([FORMAT, info.st_size, info.st_mtime_ns, settings], sort_keys=True).encode()).hexdigest()[:20]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a unique temporary file in the same folder renamed into place."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_record(root: Path, key: str, record: ImageRecord) -> None:
    """Write ``record`` to ``root/records/<key>.json`` atomically."""
    folder = root / RECORDS
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{key}.json", json.dumps(asdict(record), allow_nan=True).encode())


def load_record(root: Path, key: str, stamp: str) -> ImageRecord | None:
    """The saved record of ``key`` when it parses, has ``stamp``, describes a successful analysis and its thumbnails and
    labels still exist; else ``None`` (analyse again)."""
    try:
        record = ImageRecord(**json.loads((root / RECORDS / f"{key}.json").read_text()))
        record.size = (int(record.size[0]), int(record.size[1]))
    except (OSError, ValueError, TypeError, IndexError):
        return None
    if record.stamp != stamp or record.status != "ok" or not record.labels or not (root / LABELS / record.labels).is_file():
        return None
    if not all((root / THUMBS / name).is_file() for name in record.thumbs.values()):
        return None
    return record
