"""The README stays short and the documentation's links resolve.

``make docs`` (run by ``make test``) builds the site with ``mkdocs build --strict``, which also checks links
between pages and their anchors; these tests check what the build does not see (the README, which is no page of
the site) and keep the cheap checks runnable without MkDocs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def relative_links(path: Path) -> list[str]:
    """Targets of the Markdown links and images in ``path`` that point at files (no URLs, no in-page anchors)."""
    text = INLINE_CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue
        targets.append(target)
    return targets


def test_readme_is_at_most_250_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move details into docs/ (at most {README_MAX_LINES})"


def test_readme_names_the_default_models_domain_in_its_first_paragraph() -> None:
    body = README.read_text(encoding="utf-8").split("\n\n")
    first = next(block for block in body if block.strip() and not block.startswith("#"))
    assert "synthetic" in first and "photograph" in first


def test_readme_shows_the_two_commands_the_screenshot_and_the_docs() -> None:
    text = README.read_text(encoding="utf-8")
    for needle in ("make run", "make test", "HOST=", "PORT=", "docs/screenshot.png", "make docs", "curl ", "seg-uncertainty analyze"):
        assert needle in text, needle


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file(path: Path) -> None:
    missing = []
    for target in relative_links(path):
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        if file_part and not (path.parent / file_part).exists():
            missing.append(target)
    assert not missing, f"{path.relative_to(ROOT)}: links to missing files: {missing}"


def test_the_link_checker_sees_links_and_skips_code_and_urls(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "[a](a.md) ![b](img/b.png) [c](c.md#part) [web](https://example.com) [here](#top) `[not](code.md)`\n```\n[not](fenced.md)\n```\n",
        encoding="utf-8",
    )
    assert relative_links(page) == ["a.md", "img/b.png", "c.md#part"]


def _nav_files(entries: object) -> list[str]:
    if isinstance(entries, str):
        return [entries]
    if isinstance(entries, list):
        return [f for entry in entries for f in _nav_files(entry)]
    if isinstance(entries, dict):
        return [f for value in entries.values() for f in _nav_files(value)]
    return []


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_files(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages


@pytest.mark.parametrize(
    ("page", "marker"),
    [
        ("api.md", "<!-- openapi -->"),
        ("cli.md", "<!-- cli -->"),
        ("configuration.md", "<!-- settings -->"),
        ("errors.md", "<!-- error-codes -->"),
        ("maps.md", "<!-- maps -->"),
    ],
)
def test_generated_sections_keep_their_markers(page: str, marker: str) -> None:
    """The hook (docs/hooks/generated.py) fills these from the code; without the marker the page would go stale."""
    assert marker in (DOCS / page).read_text(encoding="utf-8")


def test_every_results_table_is_dated_with_its_commit_and_command() -> None:
    text = (DOCS / "results.md").read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    measured = [s for s in sections if "|---" in s or "```" in s]
    assert len(measured) >= 15
    for section in measured:
        title = section.splitlines()[0]
        if title.startswith("Smaller measurements"):
            assert re.search(r"`[0-9a-f]{7}`", section), title
            continue
        assert re.search(r"\*\*Date:\*\* \d{4}-\d{2}-\d{2}", section), title
        assert re.search(r"\*\*Recorded in commit\*\* `[0-9a-f]{7}`", section), title
        assert "**Command:**" in section, title
