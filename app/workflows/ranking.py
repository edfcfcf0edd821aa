"""``rank``: analyse a folder, order its images by an image-level score, optionally pick a diverse batch, and write
``ranking.csv``, a self-contained ``gallery.html`` and Label Studio tasks for the batch.

Every image's record is saved as soon as it is analysed (:mod:`app.workflows.rank_records`), so a run stopped part
way continues where it stopped; the outputs are written from the records. Every map's mean and thumbnail is kept, so
another ``--by`` reuses the records; the embedding is computed when a diverse batch first asks for it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from app.engine.cancel import CancelToken, checkpoint
from app.engine.geometry import pad_to_stride, to_tensor
from app.engine.image_embedding import image_embedding
from app.io.decoding import ImageDecodeError
from app.io.gallery import GalleryItem, gallery_html
from app.io.label_studio import LabelledImage, labeling_config, task
from app.io.npz import label_dtype
from app.io.rendering import png_bytes, render_labels, render_scalar
from app.maps.registry import MAP_NAMES, get_map
from app.metrics.selection import diverse_batch, rank_by_score
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.output_folder import utf8_name
from app.workflows.rank_records import (
    LABELS,
    THUMBS,
    ImageRecord,
    atomic_write,
    bundle_fingerprint,
    load_record,
    record_key,
    save_record,
    source_stamp,
)

__all__ = [
    "CONFIG_FILE",
    "GALLERY_FILE",
    "RANKING_FILE",
    "TASKS_FILE",
    "Ranking",
    "analyse_records",
    "choose",
    "common_folder",
    "shown_name",
    "write_outputs",
]

RANKING_FILE = "ranking.csv"
GALLERY_FILE = "gallery.html"
TASKS_FILE = "label_studio_tasks.json"
CONFIG_FILE = "label_studio_config.xml"
THUMB_SIDE = 160


@dataclass(frozen=True)
class Ranking:
    """The run's records with their order and chosen batch.

    Attributes:
        records: One per input, in input order.
        scores: ``(score, error)`` of each record by ``by`` (NaN: failed).
        order: Indices into ``records`` from the highest score down (failed images last).
        batch: Indices of the batch to label, in the order picked (``budget`` of them at most).
        by: The map the score comes from.
        diverse: Whether the batch was picked for diversity (:func:`~app.metrics.selection.diverse_batch`).
    """

    records: list[ImageRecord]
    scores: list[tuple[float, float | None]]
    order: list[int]
    batch: list[int]
    by: str
    diverse: bool


def _thumb(rgb: np.ndarray, root: Path, name: str, nearest: bool) -> str:
    image = Image.fromarray(rgb)
    image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS)
    atomic_write(root / THUMBS / name, png_bytes(np.asarray(image)))
    return name


def _labels_png(labels: np.ndarray, classes: int) -> bytes:
    """Class indices as a single-channel PNG in :func:`~app.io.npz.label_dtype`: 8-bit up to 256 classes, 16-bit beyond."""
    out = io.BytesIO()
    Image.fromarray(labels.astype(label_dtype(classes))).save(out, format="PNG")
    return out.getvalue()


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _embedding(analyzer: Analyzer, rgb: np.ndarray) -> list[float]:
    bundle = analyzer.bundle
    x = to_tensor(rgb, bundle.card.normalization.mean, bundle.card.normalization.std).to(analyzer.device)
    padded, _ = pad_to_stride(x, bundle.net.stride)
    return [float(v) for v in image_embedding(bundle.net, padded)[0].cpu().numpy()]


def _analyse(
    analyzer: Analyzer, file: Path, request: AnalysisRequest, root: Path, key: str, stamp: str, embed: bool, cancel: CancelToken | None
) -> ImageRecord:
    """Analyse one file into its record, thumbnails and labels (a file that cannot be analysed: a failed record)."""
    try:
        analysis = analyzer.analyze_bytes(file.read_bytes(), request, cancel=cancel)
    except (OSError, ImageDecodeError, ValueError) as exc:
        return ImageRecord(file=str(file), stamp=stamp, status="failed", error=str(exc))
    colours = [c.colour for c in analyzer.bundle.card.classes]
    for folder in (LABELS, THUMBS):
        (root / folder).mkdir(parents=True, exist_ok=True)
    atomic_write(root / LABELS / f"{key}.png", _labels_png(analysis.prediction, analysis.num_classes))
    computed = [name for name in MAP_NAMES if name not in analysis.unavailable]
    thumbs = {
        "input": _thumb(analysis.image, root, f"{key}_input.png", nearest=False),
        "prediction": _thumb(render_labels(analysis.prediction, colours), root, f"{key}_prediction.png", nearest=True),
    }
    for name in computed:
        thumbs[f"map:{name}"] = _thumb(render_scalar(analysis.maps[name], get_map(name), analysis.num_classes), root, f"{key}_{name}.png", nearest=True)
    height, width = analysis.input_size or analysis.prediction.shape
    errors = analysis.mean_errors or {}
    return ImageRecord(
        file=str(file),
        stamp=stamp,
        means={k: float(np.mean(analysis.maps[k], dtype=np.float64)) for k in computed},
        errors={k: _finite(errors.get(k)) for k in computed},
        embedding=_embedding(analyzer, analysis.image) if embed else [],
        size=(int(width), int(height)),
        thumbs=thumbs,
        labels=f"{key}.png",
    )


def analyse_records(
    analyzer: Analyzer,
    files: Sequence[Path],
    root: Path,
    request: AnalysisRequest,
    embed: bool = False,
    progress: Callable[[Sequence[Path]], Iterable[Path]] = lambda items: items,
    cancel: CancelToken | None = None,
) -> Iterable[tuple[ImageRecord, bool]]:
    """Each file's record, ``(record, reused)``: the saved one when it is still valid (:func:`load_record`), else a new
    analysis (saved before it is yielded). ``embed``: records without an embedding get one (a reused record too)."""
    bundle = analyzer.bundle
    settings = {"bundle": bundle_fingerprint(bundle.card.model_dump_json(), bundle.path), "request": asdict(request), "max_pixels": analyzer.max_pixels}
    for file in progress(files):
        checkpoint(cancel)
        key = record_key(file)
        try:
            stamp = source_stamp(file, settings)
        except OSError as exc:
            yield ImageRecord(file=str(file), stamp="", status="failed", error=f"cannot read it: {exc.strerror or exc}"), False
            continue
        record = load_record(root, key, stamp)
        if record is not None and embed and not record.embedding:
            try:
                rgb, _ = analyzer.decode_for(file.read_bytes(), request, cancel=cancel)
            except (OSError, ImageDecodeError, ValueError):
                record = None
            else:
                record.embedding = _embedding(analyzer, rgb)
                save_record(root, key, record)
        if record is not None:
            yield record, True
            continue
        record = _analyse(analyzer, file, request, root, key, stamp, embed, cancel)
        save_record(root, key, record)
        yield record, False


def choose(records: Sequence[ImageRecord], by: str, budget: int, diverse: bool) -> Ranking:
    """Order ``records`` by ``by``'s score and pick the batch: the ``budget`` highest scores, or a diverse batch among the top ones."""
    scored = [r.score(by) for r in records]
    scores = np.array([s for s, _ in scored], dtype=np.float64)
    order = [int(i) for i in rank_by_score(scores)]
    if diverse:
        width = max((len(r.embedding) for r in records), default=0)
        embeddings = np.array([r.embedding if len(r.embedding) == width else [0.0] * width for r in records], dtype=np.float64)
        batch = diverse_batch(scores, embeddings, budget)
    else:
        batch = [i for i in order if not np.isnan(scores[i])][:budget]
    return Ranking(list(records), scored, order, batch, by, diverse)


def shown_name(file: Path, folder: Path) -> str:
    """``file`` relative to ``folder`` when it lies in it (as Label Studio's local-files root would see it), as UTF-8 text."""
    try:
        return utf8_name(file.resolve().relative_to(folder.resolve()).as_posix())
    except ValueError:
        return utf8_name(str(file))


def _csv_bytes(ranking: Ranking, folder: Path) -> bytes:
    picked = {index: n + 1 for n, index in enumerate(ranking.batch)}
    fields = ["rank", "file", "status", "error", "score", "score_error", "batch", *(f"mean_{k}" for k in MAP_NAMES), "width", "height"]
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for position, index in enumerate(ranking.order, start=1):
        r = ranking.records[index]
        score, error = ranking.scores[index]
        ok = not np.isnan(score)
        row: dict[str, object] = {
            "rank": position if ok else "",
            "file": shown_name(Path(r.file), folder),
            "status": r.status,
            "error": utf8_name(r.error),
            "score": f"{score:.6g}" if ok else "",
            "score_error": "" if error is None else f"{error:.3g}",
            "batch": picked.get(index, ""),
            "width": r.size[0] or "",
            "height": r.size[1] or "",
        }
        row.update({f"mean_{k}": f"{r.means[k]:.6g}" if k in r.means else "" for k in MAP_NAMES})
        writer.writerow(row)
    return out.getvalue().encode("utf-8")


def write_outputs(root: Path, ranking: Ranking, analyzer: Analyzer, folder: Path, image_prefix: str) -> None:
    """``ranking.csv``, ``gallery.html`` and, for the batch, ``label_studio_tasks.json`` with ``label_studio_config.xml``
    (each written whole, then renamed into place).

    Args:
        root: The output folder (holding the records, thumbnails and labels).
        ranking: What :func:`choose` returned.
        analyzer: The analyser the records came from (its card names the classes).
        folder: What file names are relative to (the ranked folder, or the inputs' common folder).
        image_prefix: Prepended to each image's URL-quoted relative path in a task's ``data.image`` (Label Studio's local-files URL).
    """
    card = analyzer.bundle.card
    spec = get_map(ranking.by)
    atomic_write(root / RANKING_FILE, _csv_bytes(ranking, folder))
    picked = {index: n + 1 for n, index in enumerate(ranking.batch)}
    items = []
    for index in ranking.order:
        r = ranking.records[index]
        score, error = ranking.scores[index]
        names = {"input": "input", "prediction": "prediction", "map": f"map:{ranking.by}"}
        thumbs = {k: (root / THUMBS / r.thumbs[v]).read_bytes() for k, v in names.items() if v in r.thumbs}
        failed = r.error if r.status != "ok" else (None if not np.isnan(score) else f"model {card.name} does not compute {ranking.by}")
        items.append(GalleryItem(shown_name(Path(r.file), folder), score, error, picked.get(index), thumbs, utf8_name(failed) if failed else None))
    title = f"{'1 − ' if spec.uncertain_when == 'low' else ''}{spec.title} (image mean)"
    atomic_write(root / GALLERY_FILE, gallery_html(items, title, card.name, ranking.diverse).encode("utf-8"))
    tasks = []
    for n, index in enumerate(ranking.batch, start=1):
        r = ranking.records[index]
        labels = r.predicted_labels(root)
        if labels.shape[::-1] != r.size:
            labels = np.asarray(Image.fromarray(labels.astype(np.int32)).resize(r.size, Image.Resampling.NEAREST), dtype=np.int64)
        shown = shown_name(Path(r.file), folder)
        score, error = ranking.scores[index]
        item = LabelledImage(image=f"{image_prefix}{quote(shown, safe='/')}", labels=labels, score=score, score_error=error, rank=n, file=shown)
        tasks.append(task(item, [c.name for c in card.classes], ranking.by, f"seg-uncertainty {card.name}"))
    atomic_write(root / TASKS_FILE, json.dumps(tasks).encode("utf-8"))
    atomic_write(root / CONFIG_FILE, labeling_config([c.name for c in card.classes], [c.colour for c in card.classes]).encode("utf-8"))


def common_folder(files: Sequence[Path], folders: Sequence[Path]) -> Path:
    """What names are relative to: the one ranked folder, else the deepest folder holding every file."""
    if len(folders) == 1:
        return folders[0]
    return Path(os.path.commonpath([str(f.resolve().parent) for f in files])) if files else Path.cwd()
