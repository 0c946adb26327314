"""The typed public API, as mypy --strict sees it: tests/typing/ is checked in a subprocess.

``tests/typing/fetchers.py`` holds the documented fetcher and callback styles with
``reveal_type`` calls (``# R: <type>`` says what each must show) and must pass cleanly;
``tests/typing/wrong_calls.py`` holds calls that must be flagged (``# E: <codes>`` says which
error codes, line by line). mypy runs with tests/typing/mypy.ini: strict, with the
``daffi.mypy`` plugin that the docs recommend for the ``...`` bodies of proxy fetchers.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
from collections import defaultdict

import pytest

pytest.importorskip("mypy")

ROOT = pathlib.Path(__file__).resolve().parents[2]
TYPING = ROOT / "tests" / "typing"
_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*)$")
_CODE = re.compile(r"\[(?P<code>[a-z-]+)\]$")
_REVEALED = re.compile(r'^Revealed type is "(?P<type>.*)"$')

pytestmark = pytest.mark.timeout(300)


def run_mypy(*args: str, cache: pathlib.Path) -> list[re.Match[str]]:
    completed = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    if completed.returncode not in (0, 1):  # 2: mypy itself failed (bad config, crash)
        pytest.fail(f"mypy failed:\n{completed.stdout}\n{completed.stderr}")
    return [m for m in map(_LINE.match, completed.stdout.splitlines()) if m is not None]


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> list[re.Match[str]]:
    """mypy's lines for both files, with the plugin (one run: mypy is slow to start)."""
    return run_mypy(
        "--config-file",
        str(TYPING / "mypy.ini"),
        str(TYPING / "fetchers.py"),
        str(TYPING / "wrong_calls.py"),
        cache=tmp_path_factory.mktemp("mypy-cache"),
    )


def markers(name: str, tag: str) -> dict[int, str]:
    """``{line: text}`` of the ``# <tag>: text`` comments in tests/typing/<name>."""
    found = {}
    for number, line in enumerate((TYPING / name).read_text().splitlines(), start=1):
        head, sep, text = line.rpartition(f"# {tag}: ")
        if sep and head.strip():
            found[number] = text.strip()
    return found


def of_file(lines: list[re.Match[str]], name: str, kind: str) -> list[re.Match[str]]:
    return [m for m in lines if pathlib.Path(m["file"]).name == name and m["kind"] == kind]


def test_the_documented_styles_pass_mypy_strict(checked: list[re.Match[str]]) -> None:
    errors = [m.group(0) for m in of_file(checked, "fetchers.py", "error")]
    assert errors == []


def test_revealed_types(checked: list[re.Match[str]]) -> None:
    expected = markers("fetchers.py", "R")
    revealed = {}
    for m in of_file(checked, "fetchers.py", "note"):
        shown = _REVEALED.match(m["text"])
        if shown is not None:
            revealed[int(m["line"])] = shown["type"]
    assert len(expected) >= 20
    assert revealed == expected


def test_wrong_calls_are_flagged(checked: list[re.Match[str]]) -> None:
    expected = {
        line: {code.strip() for code in codes.split(",")}
        for line, codes in markers("wrong_calls.py", "E").items()
    }
    flagged: dict[int, set[str]] = defaultdict(set)
    for m in of_file(checked, "wrong_calls.py", "error"):
        code = _CODE.search(m["text"])
        flagged[int(m["line"])].add(code["code"] if code else m["text"])
    assert len(expected) >= 10
    assert dict(flagged) == expected


def test_without_the_plugin_proxy_bodies_are_empty_bodies(tmp_path: pathlib.Path) -> None:
    """What the plugin is for: plain --strict reports every ``...`` proxy fetcher body (and
    nothing else of the example changes: imports are not followed, so this run is quick)."""
    lines = run_mypy(
        "--strict",
        "--follow-imports=skip",
        "--config-file=",
        str(TYPING / "fetchers.py"),
        cache=tmp_path,
    )
    flagged = {int(m["line"]) for m in of_file(lines, "fetchers.py", "error")}
    source = (TYPING / "fetchers.py").read_text().splitlines()
    empty_bodies = {
        number
        for number, line in enumerate(source, start=1)
        if re.match(r"\s*(async )?def \w+\(.*\) -> (?!None)[\w\[\], ]+: \.\.\.$", line)
    }
    assert len(empty_bodies) >= 6
    assert empty_bodies <= flagged
    messages = {m["text"] for m in of_file(lines, "fetchers.py", "error")}
    assert any("[empty-body]" in text for text in messages)


@pytest.mark.parametrize("folder", ["basics", "testing"])
def test_the_documented_programs_pass_mypy_strict(folder: str, tmp_path: pathlib.Path) -> None:
    """The example programs the docs show (docs/examples/basics, docs/examples/testing) pass
    ``mypy --strict`` with the plugin, as the docs advise users to run it. (The scheduling
    examples are the daffi 2 seed's programs, untyped as daffi 2 wrote them.)"""
    lines = run_mypy(
        "--config-file",
        str(TYPING / "mypy.ini"),
        str(ROOT / "docs" / "examples" / folder),
        cache=tmp_path,
    )
    assert [m.group(0) for m in lines if m["kind"] == "error"] == []
