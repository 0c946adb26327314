"""The typed public API, as mypy --strict sees it: tests/typing/ is checked in a subprocess.

``tests/typing/fetchers.py`` holds the documented fetcher and callback styles and
``tests/typing/fetcher_methods.py`` the methods of ``Fetcher`` subclasses, with
``reveal_type`` calls (``# R: <type>`` says what each must show); both must pass cleanly.
``tests/typing/wrong_calls.py`` holds calls that must be flagged (``# E: <codes>`` says which
error codes, line by line). mypy runs with tests/typing/mypy.ini: strict, with the
``daffi.mypy`` plugin that the docs recommend (for the ``...`` bodies of proxy fetchers and
the methods of ``Fetcher`` subclasses). Every run gets a fresh cache directory (the plugin
marks ``@fetcher`` bodies only in the modules mypy parses anew), except in the test of what a
run that reuses the cache sees.
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
    """mypy's lines for the three files, with the plugin (one run: mypy is slow to start)."""
    return run_mypy(
        "--config-file",
        str(TYPING / "mypy.ini"),
        str(TYPING / "fetchers.py"),
        str(TYPING / "fetcher_methods.py"),
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


def revealed_types(lines: list[re.Match[str]], name: str) -> dict[int, str]:
    """``{line: type}`` of the ``reveal_type`` notes mypy printed for tests/typing/<name>."""
    revealed = {}
    for m in of_file(lines, name, "note"):
        shown = _REVEALED.match(m["text"])
        if shown is not None:
            revealed[int(m["line"])] = shown["type"]
    return revealed


@pytest.mark.parametrize("name", ["fetchers.py", "fetcher_methods.py"])
def test_the_documented_styles_pass_mypy_strict(checked: list[re.Match[str]], name: str) -> None:
    errors = [m.group(0) for m in of_file(checked, name, "error")]
    assert errors == []


@pytest.mark.parametrize("name", ["fetchers.py", "fetcher_methods.py"])
def test_revealed_types(checked: list[re.Match[str]], name: str) -> None:
    expected = markers(name, "R")
    assert len(expected) >= 20
    assert revealed_types(checked, name) == expected


def test_fetcher_methods_are_typed_by_the_plugin_only(tmp_path: pathlib.Path) -> None:
    """Without the plugin a Fetcher subclass's public methods are the plain methods written
    (no ``.call``, the class's ``exec_modifier`` ignored); with it they are fetchers, and the
    members the run time leaves alone (``_private``, ``@local``, static and class methods,
    properties, classes that are no Fetcher) are revealed the same either way."""
    lines = run_mypy(
        "--strict", "--config-file=", str(TYPING / "fetcher_methods.py"), cache=tmp_path
    )
    without = revealed_types(lines, "fetcher_methods.py")
    expected = markers("fetcher_methods.py", "R")
    source = (TYPING / "fetcher_methods.py").read_text().splitlines()

    def line_of(text: str) -> int:
        (number,) = [n for n, line in enumerate(source, start=1) if f"reveal_type({text})" in line]
        return number

    untouched = ["c.double", "c._helper", "c.tool", "Calc.make", "c.size"]
    for text in [*untouched, "NotAFetcher().sub"]:
        assert without[line_of(text)] == expected[line_of(text)], text
    assert without[line_of("c.sub")] == "def (a: int, b: int) -> int"
    assert expected[line_of("c.sub")].startswith("daffi.registry._typing.SyncFetcherFunction[")
    assert without[line_of("Scheduler().tick()")] == "None"
    assert expected[line_of("Scheduler().tick()")] == "daffi._results.ScheduledTask"
    errors = {m["text"] for m in of_file(lines, "fetcher_methods.py", "error")}
    assert any('has no attribute "call"' in text for text in errors)


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


_USER_MODULE = """\
from daffi import PERIOD, Fetcher

from settings import LIMIT


class Scheduler(Fetcher):
    exec_modifier = PERIOD(interval="5s")

    def tick(self, n: int) -> int: ...


task = Scheduler().tick(LIMIT)
task.cancel()
again = Scheduler().tick.call(1, exec_modifier=PERIOD(interval=1))
reveal_type(task)
reveal_type(again)
reveal_type(LIMIT)
"""


def test_fetcher_methods_stay_typed_when_mypy_reuses_its_cache(tmp_path: pathlib.Path) -> None:
    """mypy re-analyzes a module when a module it imports changes, without parsing it anew
    the way the plugin's first hook sees (``get_additional_deps``): the methods are typed in
    semantic analysis, every time, so the second run sees what the first did."""
    (tmp_path / "user.py").write_text(_USER_MODULE)
    settings = tmp_path / "settings.py"
    settings.write_text("LIMIT = 3\n")
    args = ("--config-file", str(TYPING / "mypy.ini"), str(tmp_path / "user.py"))
    first = run_mypy(*args, cache=tmp_path / "cache")
    settings.write_text("LIMIT = True\n")  # a new interface: user.py is analyzed again
    second = run_mypy(*args, cache=tmp_path / "cache")

    for lines, limit in [(first, "int"), (second, "bool")]:
        assert [m.group(0) for m in lines if m["kind"] == "error"] == []
        assert list(revealed_types(lines, "user.py").values()) == [
            "daffi._results.ScheduledTask",
            "daffi._results.ScheduledTask",
            limit,
        ]


@pytest.mark.parametrize("folder", ["basics", "testing", "scheduling", "observability"])
def test_the_documented_programs_pass_mypy_strict(folder: str, tmp_path: pathlib.Path) -> None:
    """The example programs the docs show (docs/examples/basics, docs/examples/testing,
    docs/examples/scheduling, docs/examples/observability) pass ``mypy --strict`` with the
    plugin, as the docs advise users to run it. The scheduling ones call methods of a
    ``Fetcher`` subclass whose ``exec_modifier`` is ``PERIOD``: they type-check only because
    the plugin types them."""
    lines = run_mypy(
        "--config-file",
        str(TYPING / "mypy.ini"),
        str(ROOT / "docs" / "examples" / folder),
        cache=tmp_path,
    )
    assert [m.group(0) for m in lines if m["kind"] == "error"] == []
