"""The documentation's links and example paths point at things that exist.

Checked in README.md, CHANGELOG.md and docs/*.md:

- every relative Markdown link (``[text](path)``, ``[text](path#anchor)``, ``![alt](path)``,
  ``[ref]: path``) points to an existing file or directory, and an ``#anchor`` into a
  Markdown file names one of its headings;
- every ``docs/examples/...`` path mentioned anywhere (prose, code, snippet includes) exists;
- every page in mkdocs.yml's ``nav`` exists, and every page is in the nav;
- no page cites what users do not have: the project's internal notes (``shared/...``) or
  its issue numbers.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS.glob("*.md")])

FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
EXAMPLE_PATH = re.compile(r"docs/examples/[\w./-]*[\w/]")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
NAV_PAGE = re.compile(r"^\s*-\s*(?:[^:\n]+:\s*)?([\w./-]+\.md)\s*$", re.MULTILINE)
INTERNAL_REFERENCE = re.compile(r"\bshared/|\bissues? #?\d+|\bthis issue\b", re.IGNORECASE)


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans (links there are code)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (used by mkdocs) gives a heading."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)  # code spans keep their text
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    return {slug(match) for match in HEADING.findall(FENCE.sub("", page.read_text()))}


def links(page: Path) -> list[str]:
    text = prose(page.read_text())
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def test_there_are_pages_to_check() -> None:
    names = {page.name for page in PAGES}
    assert {"README.md", "index.md", "guide.md", "design.md", "api.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(page: Path) -> None:
    broken = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append(f"{target}: no such file {destination}")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading with anchor #{anchor} in {destination.name}")
    assert not broken, f"broken links in {page.relative_to(ROOT)}:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_mentioned_example_paths_exist(page: Path) -> None:
    missing = sorted(
        {path for path in EXAMPLE_PATH.findall(page.read_text()) if not (ROOT / path).exists()}
    )
    assert not missing, f"{page.relative_to(ROOT)} mentions missing paths: {missing}"


def nav_pages() -> list[str]:
    config = (ROOT / "mkdocs.yml").read_text()
    nav = config.split("\nnav:", 1)[1].split("\n\n", 1)[0]
    return NAV_PAGE.findall(nav)


def test_mkdocs_nav_pages_exist() -> None:
    pages = nav_pages()
    assert "index.md" in pages
    missing = [page for page in pages if not (DOCS / page).exists()]
    assert not missing, f"mkdocs.yml nav lists missing pages: {missing}"


def test_every_docs_page_is_in_the_nav() -> None:
    outside = sorted({page.name for page in DOCS.glob("*.md")} - set(nav_pages()))
    assert not outside, f"pages missing from mkdocs.yml's nav (unreachable on the site): {outside}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_no_internal_references(page: Path) -> None:
    found = [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(page.read_text().splitlines(), start=1)
        if INTERNAL_REFERENCE.search(line)
    ]
    assert not found, f"{page.relative_to(ROOT)} cites internal notes or issues:\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("FG: wait for the result", "fg-wait-for-the-result"),
        ("`interval`: run at a fixed rate", "interval-run-at-a-fixed-rate"),
        (
            "Where we differ from the original design and daffi 2",
            "where-we-differ-from-the-original-design-and-daffi-2",
        ),
        ("Install: `pip install '.[trio]'`", "install-pip-install-trio"),
        ("Starting daffi: `Global`", "starting-daffi-global"),
    ],
)
def test_slug_matches_mkdocs(heading: str, expected: str) -> None:
    assert slug(heading) == expected
