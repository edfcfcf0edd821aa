"""What ``rank`` keeps of each analysed image, on disk, so an interrupted run continues where it stopped.

A record is ``records/<key>.json`` (written whole, then renamed into place) with the image's score and error, every
map's mean, its embedding and where its thumbnails and predicted labels are. ``key`` hashes the input's path; the
record is reused only when the file's size and modification time and the analysis settings still match.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.engine.analysis import Analysis
from app.maps.registry import get_map

__all__ = ["BY_ALIASES", "ImageRecord", "load_record", "record_key", "resolve_by", "save_record", "score_of", "source_stamp"]

BY_ALIASES = {"mi": "mutual_information", "least_confidence": "confidence"}
RECORDS = "records"
LABELS = "labels"


def resolve_by(by: str) -> str:
    """The map name behind a ``--by`` value (``mi`` → ``mutual_information``).

    Raises:
        KeyError: not a map (the message lists them).
    """
    return get_map(BY_ALIASES.get(by, by)).name


def score_of(analysis: Analysis, by: str) -> tuple[float, float | None]:
    """The image-level score of map ``by`` (higher = less trustworthy: ``1 − mean`` for softmax confidence) and its MC
    standard error (``None`` when the analysis has none, e.g. one sample)."""
    spec = get_map(by)
    mean = float(np.mean(analysis.maps[by], dtype=np.float64))
    error = analysis.mean_errors.get(by) if analysis.mean_errors else None
    score = 1.0 - mean if spec.uncertain_when == "low" else mean
    return score, (None if error is None or not np.isfinite(error) else float(error))


@dataclass
class ImageRecord:
    """One image of a ranking run.

    Attributes:
        file: The input path.
        stamp: :func:`source_stamp` of the file and settings it was analysed with.
        status: ``ok`` or ``failed``.
        error: Why it failed.
        score: Image-level score (NaN when failed).
        score_error: Its MC standard error.
        means: Every map's image mean.
        errors: Every map's MC standard error of its mean.
        embedding: :func:`~app.engine.image_embedding.image_embedding` of the analysed image.
        size: ``(width, height)`` of the input.
        thumbs: Thumbnail name → file name under the run's ``thumbs/``.
        labels: File name of the predicted labels (single-channel PNG at the analysed size) under ``labels/``.
    """

    file: str
    stamp: str
    status: str = "ok"
    error: str = ""
    score: float = float("nan")
    score_error: float | None = None
    means: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float | None] = field(default_factory=dict)
    embedding: list[float] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)
    thumbs: dict[str, str] = field(default_factory=dict)
    labels: str = ""

    def predicted_labels(self, root: Path) -> np.ndarray:
        """The predicted labels, ``(H, W)`` int64 at the analysed size."""
        with Image.open(root / LABELS / self.labels) as image:
            return np.asarray(image, dtype=np.int64)


def record_key(file: Path) -> str:
    """A file name for ``file``'s record: a hash of its absolute path."""
    return hashlib.sha256(str(file.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:20]


def source_stamp(file: Path, settings: dict[str, Any]) -> str:
    """What must not change for a record to be reused: the file's size and mtime and the analysis settings."""
    info = file.stat()
    return hashlib.sha256(json.dumps([info.st_size, info.st_mtime_ns, settings], sort_keys=True).encode()).hexdigest()[:20]


def save_record(root: Path, key: str, record: ImageRecord) -> None:
    """Write ``record`` to ``root/records/<key>.json`` atomically (a temporary file renamed into place)."""
    folder = root / RECORDS
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{key}.tmp"
    temporary.write_text(json.dumps(asdict(record), allow_nan=True))
    os.replace(temporary, folder / f"{key}.json")


def load_record(root: Path, key: str, stamp: str) -> ImageRecord | None:
    """The saved record of ``key`` when it exists, parses and has ``stamp``; else ``None`` (analyse again)."""
    path = root / RECORDS / f"{key}.json"
    try:
        raw = json.loads(path.read_text())
        record = ImageRecord(**raw)
    except (OSError, ValueError, TypeError):
        return None
    record.size = (int(record.size[0]), int(record.size[1]))
    return record if record.stamp == stamp else None
