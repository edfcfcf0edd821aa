"""A self-contained HTML gallery of ranked images: thumbnails embedded as data URIs, sorted by score, each with its
Monte-Carlo error bar and, for the batch to label, its place in the batch."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

from app.plural import plural

__all__ = ["GalleryItem", "gallery_html"]

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1d2127; background: #f6f7f9; }
h1 { font-size: 1.2rem; margin: 0 0 4px; } p { margin: 0 0 12px; color: #5d6671; }
ol { list-style: none; padding: 0; display: grid; gap: 12px; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); }
li { background: #fff; border: 1px solid #d9dee4; border-radius: 8px; padding: 8px; }
li.batch { border: 2px solid #2563eb; }
.row { display: flex; gap: 6px; } .row img { width: 160px; height: 120px; object-fit: contain; background: #eceff3; image-rendering: pixelated; }
.name { font-weight: 600; overflow-wrap: anywhere; } .badge { background: #2563eb; color: #fff; border-radius: 4px; padding: 0 6px; margin-left: 6px; }
.bar { position: relative; height: 8px; background: #eceff3; border-radius: 2px; margin: 6px 0 2px; }
.fill { position: absolute; left: 0; top: 0; bottom: 0; background: #f79009; border-radius: 2px; }
.err { position: absolute; top: -3px; bottom: -3px; border-left: 2px solid #1d2127; border-right: 2px solid #1d2127; }
.failed { color: #b42318; }
"""


@dataclass(frozen=True)
class GalleryItem:
    """One image in the gallery.

    Attributes:
        name: The file name shown.
        score: Its score (NaN when failed).
        score_error: MC standard error of the score (``None``: unknown).
        batch: Its 1-based place in the batch to label, ``None`` when not chosen.
        thumbs: ``input``, ``prediction`` and ``map`` PNG bytes.
        failed: Why the image could not be analysed, ``None`` when it was.
    """

    name: str
    score: float
    score_error: float | None
    batch: int | None
    thumbs: dict[str, bytes]
    failed: str | None = None


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _bar(score: float, error: float | None, top: float) -> str:
    def pct(v: float) -> float:
        return 100.0 * min(1.0, max(0.0, v / top)) if top > 0 else 0.0

    whisker = ""
    if error is not None:
        whisker = f'<span class="err" style="left:{pct(score - 1.96 * error):.2f}%;width:{pct(score + 1.96 * error) - pct(score - 1.96 * error):.2f}%"></span>'
    return f'<div class="bar" role="img" aria-label="score {score:.4g}"><span class="fill" style="width:{pct(score):.2f}%"></span>{whisker}</div>'


def gallery_html(items: Sequence[GalleryItem], score_title: str, model: str, diverse: bool) -> str:
    """The gallery page, items in the given order (highest score first).

    Args:
        items: The images, already sorted.
        score_title: What the score is, e.g. ``"Mutual information (image mean)"``.
        model: The model's name.
        diverse: Whether the batch was picked for diversity (said in the header).
    """
    finite = [i.score + 1.96 * (i.score_error or 0.0) for i in items if i.failed is None and math.isfinite(i.score)]
    top = max(finite, default=1.0)
    chosen = sum(i.batch is not None for i in items)
    how = "the highest scores, then spread out over the images' features (k-center greedy)" if diverse else "the highest scores"
    cards = []
    for position, item in enumerate(items, start=1):
        name = html.escape(item.name)
        if item.failed is not None:
            cards.append(f'<li><div class="name">{name}</div><div class="failed">not analysed: {html.escape(item.failed)}</div></li>')
            continue
        badge = f'<span class="badge">label #{item.batch}</span>' if item.batch is not None else ""
        error = "" if item.score_error is None else " (exact)" if item.score_error == 0 else f" ± {item.score_error:.2g}"
        thumbs = "".join(_img(item.thumbs[k], f"{k} of {item.name}") for k in ("input", "prediction", "map") if k in item.thumbs)
        cards.append(
            f'<li class="{"batch" if item.batch is not None else ""}"><div class="name">{position}. {name}{badge}</div>'
            f'<div class="row">{thumbs}</div>{_bar(item.score, item.score_error, top)}'
            f"<div>score {item.score:.4g}{error} <small>(bar: ± 1.96 SE)</small></div></li>"
        )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Label these first · {html.escape(model)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Label these first: {plural(len(items), 'image')} by {html.escape(score_title)}</h1>"
        f"<p>Model {html.escape(model)}. Highest score first (input, prediction, map). The {chosen} marked <b>label #n</b> are the batch: {how}.</p>"
        f"<ol>{''.join(cards)}</ol></body></html>\n"
    )
