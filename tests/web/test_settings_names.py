"""Every ``SEGU_*`` name the code, the docs and the deployment files mention is a :class:`Settings` field, and the
configuration table lists every field."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from app.web.settings import Settings, env_name, settings_table_markdown

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["app", "docs", "README.md", "Dockerfile", "compose.yaml", "deploy"]
NAME = re.compile(r"\bSEGU_[A-Z0-9_]+")
# SEGU_ names that are not server settings, and why.
NOT_SETTINGS = {"SEGU_VARIANT": "compose.yaml's image variant (cpu or cuda), a build argument"}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".json", ".html", ".js", ".txt", ".cfg", ".conf", ".sh", ""}


def scanned_files(root: Path, entries: Iterable[str]) -> list[Path]:
    """The text files under ``entries`` of ``root`` (a missing entry is skipped)."""
    files = []
    for entry in entries:
        path = root / entry
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        files += [p for p in candidates if p.is_file() and p.suffix in TEXT_SUFFIXES | {path.suffix}]
    return files


def unknown_names(root: Path, entries: Iterable[str]) -> list[str]:
    """``file:line: NAME`` for every ``SEGU_`` name in the files that is neither a settings field nor in :data:`NOT_SETTINGS`."""
    known = {env_name(field) for field in Settings.model_fields} | set(NOT_SETTINGS)
    found = []
    for path in scanned_files(root, entries):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            found += [f"{path.relative_to(root)}:{number}: {name}" for name in NAME.findall(line) if name not in known]
    return found


def test_every_segu_name_is_a_setting() -> None:
    assert unknown_names(ROOT, SCANNED) == []


def test_the_check_finds_a_name_that_is_not_a_setting(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("Set SEGU_MAX_WORK, or SEGU_MAX_WORKS.\n")
    (tmp_path / "compose.yaml").write_text("image: x:${SEGU_VARIANT:-cpu}\n")
    assert unknown_names(tmp_path, ["docs", "compose.yaml", "deploy"]) == ["docs/page.md:1: SEGU_MAX_WORKS"]


def test_env_name_refuses_a_field_that_does_not_exist() -> None:
    assert env_name("max_queue") == "SEGU_MAX_QUEUE"
    with pytest.raises(KeyError, match="not a Settings field"):
        env_name("max_queues")


def test_the_configuration_table_lists_every_field_with_its_default() -> None:
    rows = settings_table_markdown().splitlines()[2:]
    assert [row.split(" | ")[0].strip("| `") for row in rows] == [env_name(field) for field in Settings.model_fields]
    assert "| `SEGU_WARMUP` | `true` |" in settings_table_markdown()
    assert "| `SEGU_DEFAULT_SAMPLES` | `(unset)` |" in settings_table_markdown()
    assert all(row.count(" | ") == 2 for row in rows), "a description holds an unescaped pipe"
