"""The copies of the seed document's programs the process tests run are the seed's, verbatim.

``tests/processes/seed_programs/`` holds them as files (the seed document has them as
indented code blocks); ``docs/examples/scheduling/`` holds the same programs written in
today's idiom (``time.time()``) and annotated for ``mypy --strict`` (``-> None``), which is
what the documentation shows.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED_DOCUMENT = ROOT.parent / "shared" / "seed" / "scheduling-tasks.md"
COPIES = sorted((ROOT / "tests" / "processes" / "seed_programs").glob("*.py"))


def _blocks() -> list[str]:
    text = SEED_DOCUMENT.read_text(encoding="utf-8")
    return [
        textwrap.dedent(block).strip() for block in re.findall(r"```python\n(.*?)```", text, re.S)
    ]


@pytest.mark.skipif(not SEED_DOCUMENT.exists(), reason="../shared/seed is not beside the checkout")
@pytest.mark.parametrize("copy", COPIES, ids=[path.name for path in COPIES])
def test_each_copy_is_a_program_of_the_seed_document(copy: Path) -> None:
    blocks = _blocks()
    assert copy.read_text(encoding="utf-8").strip() in blocks


def test_the_copies_are_all_there() -> None:
    assert [path.name for path in COPIES] == [
        "at_time_snippet.py",
        "class_based_scheduler.py",
        "class_based_scheduler_client.py",
        "decorator_based_scheduler.py",
        "decorator_based_scheduler_service.py",
        "interval_snippet.py",
    ]


# A ``def`` line of the documented copy that ends in `` -> None:`` (the only annotation the
# copies add, for mypy --strict); group 1 is the line as the seed has it, without the colon.
_RETURNS_NONE = re.compile(r"^(\s*(?:async )?def \w+\([^)]*\)) -> None:$", re.M)


@pytest.mark.parametrize("copy", COPIES, ids=[path.name for path in COPIES])
def test_the_documented_version_differs_only_in_how_it_reads_the_clock(copy: Path) -> None:
    """docs/examples/scheduling has each seed program with ``datetime.utcnow().timestamp()``
    (right only on a UTC host) replaced by ``time.time()`` and its functions annotated
    ``-> None`` (which mypy --strict asks for), and nothing else changed."""
    seed = copy.read_text(encoding="utf-8")
    documented = (ROOT / "docs" / "examples" / "scheduling" / copy.name).read_text(encoding="utf-8")
    modern = seed.replace("from datetime import datetime\n", "").replace(
        "datetime.utcnow().timestamp()",
        "time.time()  # seconds since the epoch (UTC), on any host",
    )
    if not modern.startswith("import time\n"):
        modern = "import time\n" + modern
    unannotated, annotated = _RETURNS_NONE.subn(r"\1:", documented)
    assert unannotated == modern
    assert annotated == len(re.findall(r"^\s*(?:async )?def ", documented, re.M))
    assert "utcnow" not in documented
