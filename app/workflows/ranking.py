"""``rank``: analyse a folder, order its images by an image-level score, optionally pick a diverse batch, and write
``ranking.csv``, a self-contained ``gallery.html`` and Label Studio tasks for the batch.

Every image's record is saved as soon as it is analysed (:mod:`app.workflows.rank_records`), so a run stopped part
way continues where it stopped; the outputs are written from the records.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from app.engine.cancel import CancelToken, checkpoint
from app.engine.geometry import pad_to_stride, to_tensor
from app.engine.image_embedding import image_embedding
from app.io.decoding import ImageDecodeError
from app.io.gallery import GalleryItem, gallery_html
from app.io.label_studio import LabelledImage, labeling_config, task
from app.io.rendering import png_bytes, render_labels, render_scalar
from app.maps.registry import MAP_NAMES, get_map
from app.metrics.selection import diverse_batch, rank_by_score
from app.request import AnalysisRequest
from app.workflows.analyzer import Analyzer
from app.workflows.output_folder import utf8_name
from app.workflows.rank_records import LABELS, ImageRecord, load_record, record_key, save_record, score_of, source_stamp

__all__ = ["RANKING_FILE", "Ranking", "analyse_records", "choose", "write_outputs"]

RANKING_FILE = "ranking.csv"
GALLERY_FILE = "gallery.html"
TASKS_FILE = "label_studio_tasks.json"
CONFIG_FILE = "label_studio_config.xml"
THUMBS = "thumbs"
THUMB_SIDE = 160


@dataclass(frozen=True)
class Ranking:
    """The run's records with their order and chosen batch.

    Attributes:
        records: One per input, in input order.
        order: Indices into ``records`` from the highest score down (failed images last).
        batch: Indices of the batch to label, in the order picked (``budget`` of them at most).
        by: The map the score comes from.
        diverse: Whether the batch was picked for diversity (:func:`~app.metrics.selection.diverse_batch`).
    """

    records: list[ImageRecord]
    order: list[int]
    batch: list[int]
    by: str
    diverse: bool


def _thumb(rgb: np.ndarray, root: Path, name: str, nearest: bool) -> str:
    image = Image.fromarray(rgb)
    image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS)
    (root / THUMBS).mkdir(parents=True, exist_ok=True)
    (root / THUMBS / name).write_bytes(png_bytes(np.asarray(image)))
    return name


def _analyse(analyzer: Analyzer, file: Path, request: AnalysisRequest, root: Path, key: str, stamp: str, by: str, cancel: CancelToken | None) -> ImageRecord:
    """Analyse one file into its record, thumbnails and labels (a file that cannot be analysed: a failed record)."""
    try:
        analysis = analyzer.analyze_bytes(file.read_bytes(), request, cancel=cancel)
    except (OSError, ImageDecodeError, ValueError) as exc:
        return ImageRecord(file=str(file), stamp=stamp, status="failed", error=str(exc))
    bundle = analyzer.bundle
    colours = [c.colour for c in bundle.card.classes]
    score, error = score_of(analysis, by)
    x, _ = pad_to_stride(to_tensor(analysis.image, bundle.card.normalization.mean, bundle.card.normalization.std).to(analyzer.device), bundle.net.stride)
    embedding = image_embedding(bundle.net, x)[0].cpu().numpy()
    (root / LABELS).mkdir(parents=True, exist_ok=True)
    Image.fromarray(analysis.prediction.astype(np.uint8), mode="L").save(root / LABELS / f"{key}.png")
    spec = get_map(by)
    thumbs = {
        "input": _thumb(analysis.image, root, f"{key}_input.png", nearest=False),
        "prediction": _thumb(render_labels(analysis.prediction, colours), root, f"{key}_prediction.png", nearest=True),
        "map": _thumb(render_scalar(analysis.maps[by], spec, analysis.num_classes), root, f"{key}_{by}.png", nearest=True),
    }
    height, width = analysis.input_size or analysis.prediction.shape
    return ImageRecord(
        file=str(file),
        stamp=stamp,
        score=score,
        score_error=error,
        means={k: float(np.mean(analysis.maps[k], dtype=np.float64)) for k in MAP_NAMES if k not in analysis.unavailable},
        errors={k: analysis.mean_errors.get(k) for k in MAP_NAMES if k not in analysis.unavailable},
        embedding=[float(v) for v in embedding],
        size=(int(width), int(height)),
        thumbs=thumbs,
        labels=f"{key}.png",
    )


def analyse_records(
    analyzer: Analyzer,
    files: Sequence[Path],
    root: Path,
    request: AnalysisRequest,
    by: str,
    progress: Callable[[Sequence[Path]], Iterable[Path]] = lambda items: items,
    cancel: CancelToken | None = None,
) -> Iterable[tuple[ImageRecord, bool]]:
    """Each file's record, ``(record, reused)``: the saved one when its file and settings are unchanged, else a new analysis
    (saved before it is yielded)."""
    settings = {"model": analyzer.bundle.card.name, "request": asdict(request), "by": by}
    for file in progress(files):
        checkpoint(cancel)
        key, stamp = record_key(file), source_stamp(file, settings)
        record = load_record(root, key, stamp)
        if record is not None:
            yield record, True
            continue
        record = _analyse(analyzer, file, request, root, key, stamp, by, cancel)
        save_record(root, key, record)
        yield record, False


def choose(records: Sequence[ImageRecord], by: str, budget: int, diverse: bool) -> Ranking:
    """Order ``records`` by score and pick the batch: the ``budget`` highest scores, or a diverse batch among the top ones."""
    scores = np.array([r.score if r.status == "ok" else np.nan for r in records], dtype=np.float64)
    order = [int(i) for i in rank_by_score(scores)]
    if diverse:
        width = max((len(r.embedding) for r in records), default=0)
        embeddings = np.array([r.embedding if len(r.embedding) == width else [0.0] * width for r in records], dtype=np.float64)
        batch = diverse_batch(scores, embeddings, budget)
    else:
        batch = [i for i in order if not np.isnan(scores[i])][:budget]
    return Ranking(list(records), order, batch, by, diverse)


def _write_csv(path: Path, ranking: Ranking, folder: Path | None) -> None:
    picked = {index: n + 1 for n, index in enumerate(ranking.batch)}
    fields = ["rank", "file", "status", "error", "score", "score_error", "batch", *(f"mean_{k}" for k in MAP_NAMES), "width", "height"]
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for position, index in enumerate(ranking.order, start=1):
            r = ranking.records[index]
            row: dict[str, object] = {
                "rank": position if r.status == "ok" else "",
                "file": utf8_name(_shown(Path(r.file), folder)),
                "status": r.status,
                "error": utf8_name(r.error),
                "score": f"{r.score:.6g}" if r.status == "ok" else "",
                "score_error": "" if r.score_error is None else f"{r.score_error:.3g}",
                "batch": picked.get(index, ""),
                "width": r.size[0] or "",
                "height": r.size[1] or "",
            }
            row.update({f"mean_{k}": f"{r.means[k]:.6g}" if k in r.means else "" for k in MAP_NAMES})
            writer.writerow(row)
    os.replace(temporary, path)


def _shown(file: Path, folder: Path | None) -> str:
    """``file`` relative to the ranked folder when it lies in it (as Label Studio's local-files root would see it)."""
    if folder is not None:
        try:
            return file.resolve().relative_to(folder.resolve()).as_posix()
        except ValueError:
            pass
    return str(file)


def write_outputs(root: Path, ranking: Ranking, analyzer: Analyzer, folder: Path | None, image_prefix: str) -> None:
    """``ranking.csv``, ``gallery.html`` and, for the batch, ``label_studio_tasks.json`` with ``label_studio_config.xml``.

    Args:
        root: The output folder (holding the records, thumbnails and labels).
        ranking: What :func:`choose` returned.
        analyzer: The analyser the records came from (its card names the classes).
        folder: The ranked folder, for relative names (``None``: files as given).
        image_prefix: Prepended to each image's relative path in a task's ``data.image`` (Label Studio's local-files URL).
    """
    card = analyzer.bundle.card
    spec = get_map(ranking.by)
    _write_csv(root / RANKING_FILE, ranking, folder)
    picked = {index: n + 1 for n, index in enumerate(ranking.batch)}
    items = [
        GalleryItem(
            name=_shown(Path(r.file), folder),
            score=r.score,
            score_error=r.score_error,
            batch=picked.get(index),
            thumbs={k: (root / THUMBS / v).read_bytes() for k, v in r.thumbs.items()},
            failed=r.error if r.status != "ok" else None,
        )
        for index in ranking.order
        for r in [ranking.records[index]]
    ]
    title = f"{'1 − ' if spec.uncertain_when == 'low' else ''}{spec.title} (image mean)"
    (root / GALLERY_FILE).write_text(gallery_html(items, title, card.name, ranking.diverse), encoding="utf-8")
    tasks = []
    for n, index in enumerate(ranking.batch, start=1):
        r = ranking.records[index]
        labels = r.predicted_labels(root)
        if labels.shape[::-1] != r.size:
            labels = np.asarray(Image.fromarray(labels.astype(np.uint8), mode="L").resize(r.size, Image.Resampling.NEAREST), dtype=np.int64)
        shown = _shown(Path(r.file), folder)
        item = LabelledImage(image=f"{image_prefix}{shown}", labels=labels, score=r.score, score_error=r.score_error, rank=n, file=shown)
        tasks.append(task(item, [c.name for c in card.classes], ranking.by, f"seg-uncertainty {card.name}"))
    (root / TASKS_FILE).write_text(json.dumps(tasks), encoding="utf-8")
    (root / CONFIG_FILE).write_text(labeling_config([c.name for c in card.classes], [c.colour for c in card.classes]), encoding="utf-8")
