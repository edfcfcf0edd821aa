"""Where the page's templates and static files and the shipped model bundles live.

In the repository they are the top-level folders ``templates/``, ``static/`` and ``models/``; the wheel carries them
as package data inside ``app/`` (see ``pyproject.toml``). Both layouts are found here, the installed one first.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["models_dir", "resource_dir", "static_dir", "templates_dir"]

_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def resource_dir(name: str) -> Path:
    """The folder ``name`` (``"templates"``, ``"static"`` or ``"models"``) of an installed wheel or the source tree.

    Raises:
        FileNotFoundError: neither layout has it.
    """
    installed = Path(str(resources.files("app"))) / name
    if installed.is_dir():
        return installed
    source = _SOURCE_ROOT / name
    if source.is_dir():
        return source
    raise FileNotFoundError(f"the {name}/ folder is missing: looked in {installed} (installed package) and {source} (source tree)")


def templates_dir() -> Path:
    """The Jinja2 templates of the page."""
    return resource_dir("templates")


def static_dir() -> Path:
    """The page's scripts and styles."""
    return resource_dir("static")


def models_dir() -> Path:
    """The shipped model bundles (``models/<name>/``)."""
    return resource_dir("models")
