"""Where the page's templates and static files and the shipped model bundles live.

In the repository they are the top-level folders ``templates/``, ``static/`` and ``models/``; the wheel carries them
as package data inside ``app/`` (``app/templates``, ``app/static``, ``app/models/default``; see ``pyproject.toml``).
Both layouts are found here, the installed one first. The source tree is only used when it is one (it has a
``pyproject.toml``), so an installed ``app`` never picks up an unrelated ``templates/``, ``static/`` or ``models/``
folder that happens to sit next to it in ``site-packages``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["RESOURCE_NAMES", "models_dir", "resource_dir", "static_dir", "templates_dir"]

RESOURCE_NAMES = ("templates", "static", "models")
"""The folders :func:`resource_dir` knows."""

_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def _installed_root() -> Path:
    """The folder of the imported ``app`` package (``site-packages/app`` when installed, ``app/`` in the source tree)."""
    return Path(str(resources.files("app")))


def resource_dir(name: str) -> Path:
    """The folder ``name`` (``"templates"``, ``"static"`` or ``"models"``) of an installed wheel or the source tree.

    Raises:
        ValueError: ``name`` is not one of :data:`RESOURCE_NAMES`.
        FileNotFoundError: neither layout has it.
    """
    if name not in RESOURCE_NAMES:
        raise ValueError(f"unknown resource folder {name!r}: expected one of {', '.join(RESOURCE_NAMES)}")
    installed = _installed_root() / name
    if installed.is_dir():
        return installed
    source = _SOURCE_ROOT / name
    if source.is_dir() and (_SOURCE_ROOT / "pyproject.toml").is_file():
        return source
    raise FileNotFoundError(
        f"the {name}/ folder is missing: looked in {installed} (installed package) and {source} (source tree); "
        "a wheel built without the package data of pyproject.toml lacks it"
    )


def templates_dir() -> Path:
    """The Jinja2 templates of the page."""
    return resource_dir("templates")


def static_dir() -> Path:
    """The page's scripts and styles."""
    return resource_dir("static")


def models_dir() -> Path:
    """The shipped model bundles (``models/<name>/``)."""
    return resource_dir("models")
