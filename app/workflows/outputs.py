"""What ``analyze`` writes for each image (``--save``): the PNGs, ``maps.npz`` (or ``maps.zarr``), ``analysis.json``, and
which ``(C, H, W)`` class arrays the archive adds.

``--save`` names what to write on top of the default, comma-separated: ``png`` (the prediction and every map as PNG
with its colour bar), ``npz`` (the maps and labels, ``maps.npz`` or, streamed, ``maps.zarr``), ``json``
(``analysis.json``), the class arrays :data:`~app.io.npz.RAW_ARRAYS` (which go into the archive, so they write it too)
or ``all`` (every file and every class array). The default depends on the input: files named one by one get
:data:`FILE_DEFAULT` (the PNGs, the archive and ``analysis.json``); a run given a folder gets :data:`FOLDER_DEFAULT`,
the maps as PNGs only, the least that lets a user look at every image (``summary.csv`` holds each image's means and
verdict whatever is chosen).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from app.io.npz import RAW_ARRAYS, SAVE_ALL, parse_save

__all__ = ["FILE_DEFAULT", "FILE_KINDS", "FOLDER_DEFAULT", "SAVE_NAMES", "Outputs", "chosen_outputs", "parse_save_names"]

FILE_KINDS: tuple[str, ...] = ("png", "npz", "json")
SAVE_NAMES: tuple[str, ...] = (*FILE_KINDS, *RAW_ARRAYS, SAVE_ALL)


@dataclass(frozen=True)
class Outputs:
    """The files written for each image.

    Attributes:
        png: ``prediction.png`` and one PNG per map, with their legends (:mod:`app.io.legend`).
        npz: ``maps.npz`` (``maps.zarr`` for a streamed image): the maps and labels.
        json: ``analysis.json``.
        arrays: The ``(C, H, W)`` float32 arrays the archive adds (:func:`app.io.npz.parse_save`); only with ``npz``.
    """

    png: bool = True
    npz: bool = True
    json: bool = True
    arrays: tuple[str, ...] = ()

    def files(self) -> tuple[str, ...]:
        """The kinds written, in :data:`FILE_KINDS` order."""
        return tuple(kind for kind in FILE_KINDS if getattr(self, kind))


FILE_DEFAULT = Outputs()
FOLDER_DEFAULT = Outputs(npz=False, json=False)


def parse_save_names(text: str | Iterable[str]) -> tuple[str, ...]:
    """``--save``'s names, checked, in :data:`SAVE_NAMES` order: comma-separated (spaces and repeats allowed; empty: none).

    Raises:
        ValueError: an unknown name, naming the known ones.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    names = {item.strip() for item in items} - {""}
    unknown = sorted(names - set(SAVE_NAMES))
    if unknown:
        raise ValueError(f"unknown output {', '.join(map(repr, unknown))} for --save; choose from {', '.join(SAVE_NAMES)} (comma-separated)")
    return tuple(name for name in SAVE_NAMES if name in names)


def chosen_outputs(names: Iterable[str], folder: bool) -> Outputs:
    """The default for the run (:data:`FOLDER_DEFAULT` when an input is a folder, :data:`FILE_DEFAULT` otherwise) plus the
    outputs ``names`` asks for (:func:`parse_save_names`); a class array brings the archive it goes into."""
    chosen = set(names)
    base = FOLDER_DEFAULT if folder else FILE_DEFAULT
    if SAVE_ALL in chosen:
        return Outputs(arrays=RAW_ARRAYS)
    arrays = parse_save(chosen & set(RAW_ARRAYS))
    return replace(
        base,
        png=base.png or "png" in chosen,
        npz=base.npz or "npz" in chosen or bool(arrays),
        json=base.json or "json" in chosen,
        arrays=arrays,
    )
