"""The output folder of ``analyze``: check it can be written, name each input's folder in it, and write input names as UTF-8.

An input's folder is named after its file (:func:`output_names`): never empty, ``.`` or ``..``, never hidden,
never a path, never ``summary.csv``, never another input's folder (case-insensitively). An input's name as text in
``summary.csv`` and ``analysis.json`` is :func:`utf8_name`'s, so those files are valid UTF-8 whatever the names' bytes.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path

__all__ = ["SUMMARY_FILE", "OutputError", "install_folder", "output_names", "prepare_output", "utf8_name"]

SUMMARY_FILE = "summary.csv"
MAX_NAME_BYTES = 120
FALLBACK_NAME = "image"
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


class OutputError(ValueError):
    """An output folder this command cannot write into."""


def prepare_output(out: Path) -> None:
    """Create ``out`` (and its parents) and check that files can be written there.

    Raises:
        OutputError: ``out`` is a file or under one, cannot be created or written, or its ``summary.csv`` is a folder.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise OutputError(f"{out} exists and is not a folder") from exc
    except NotADirectoryError as exc:
        raise OutputError(f"{out} cannot be created: part of its path is a file") from exc
    except OSError as exc:
        raise OutputError(f"{out} cannot be created: {exc.strerror or exc}") from exc
    summary = out / SUMMARY_FILE
    if summary.exists() and not summary.is_file():
        raise OutputError(f"{summary} exists and is not a file")
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise OutputError(f"{out} is not writable: {exc.strerror or exc}") from exc


def utf8_name(name: str) -> str:
    r"""``name`` as text that encodes as UTF-8: itself when it does; else every backslash doubled and every byte that is
    not UTF-8 written ``\xNN``.

    A POSIX file name is bytes; Python holds the bytes that are not UTF-8 as surrogate escapes (``os.fsdecode``), which
    no UTF-8 file can hold. The Latin-1 name ``café.png`` (the byte ``e9`` for ``é``) is written ``caf\xe9.png``; in bash,
    ``printf '%b' 'caf\xe9.png'`` gives the real name back, in Python ``os.fsdecode(codecs.escape_decode(text)[0])``.
    """
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    escaped = name.replace("\\", "\\\\")
    try:
        return escaped.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte: not from a file name
        return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe_stem(stem: str) -> str:
    cleaned = _UNSAFE.sub("_", stem.encode("utf-8", "replace").decode("utf-8"))
    cleaned = cleaned.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore").strip(" .")
    return cleaned or FALLBACK_NAME


def output_names(files: Sequence[Path], reserved: Collection[str] = (SUMMARY_FILE,)) -> list[str]:
    """The output folder name of each input: its file stem made safe, and unique case-insensitively.

    Path separators, control characters and ``: * ? " < > |`` become ``_``; leading and trailing dots and
    spaces are dropped (so no name is ``.``, ``..`` or hidden); a name left empty is ``image``; a name equal
    to one of ``reserved`` or to an earlier input's gets ``_2``, ``_3`` ….
    """
    used = {name.casefold() for name in reserved}
    names = []
    for path in files:
        base = _safe_stem(path.stem)
        name, k = base, 2
        while name.casefold() in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name.casefold())
        names.append(name)
    return names


def install_folder(staging: Path, target: Path, superseded: Collection[str] = ()) -> None:
    """Move the complete folder ``staging`` to ``target``; into it, item by item, when ``target`` is already a folder.

    An item replaces the one of its name (a folder, such as ``maps.zarr``, whole), and the items named in ``superseded``
    (another run's outputs of another format, e.g. ``maps.npz`` beside a new ``maps.zarr``) are removed.
    """
    if not target.is_dir():
        staging.rename(target)
        return
    for item in staging.iterdir():
        dest = target / item.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(item, dest)
    for name in superseded:
        old = target / name
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink(missing_ok=True)
