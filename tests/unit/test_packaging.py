"""Packaging: trio is the extra ``daffi[trio]``, and the metadata says what pyproject promises.

The trio tests run in a fresh interpreter with ``sys.modules["trio"] = None``, which makes
``import trio`` fail as it does where trio is not installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRIO_HINT = "backend='trio' needs trio: pip install 'daffi[trio]'"


def run_without_trio(program: str) -> subprocess.CompletedProcess[str]:
    """Run *program* in a new interpreter where ``import trio`` fails."""
    code = "import sys\nsys.modules['trio'] = None\n" + textwrap.dedent(program)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


@pytest.fixture(scope="module")
def project() -> Any:
    """pyproject.toml's ``[project]`` table (tomllib: Python 3.11+)."""
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def requirement_names(requirements: list[str]) -> set[str]:
    """The distribution names of PEP 508 requirements (``"trio>=0.25"`` -> ``"trio"``)."""
    return {re.split(r"[^A-Za-z0-9._-]", req, maxsplit=1)[0] for req in requirements}


def test_asyncio_users_run_daffi_without_trio() -> None:
    result = run_without_trio(
        """
        import importlib, pkgutil
        import daffi
        from daffi import Global

        for module in pkgutil.walk_packages(daffi.__path__, "daffi."):
            if module.name != "daffi.__main__":
                importlib.import_module(module.name)
        g = Global(init_controller=True, address="memory://packaging-no-trio")
        g.stop()
        print("trio loaded:", sorted(name for name in sys.modules if name.startswith("trio")
                                     and sys.modules[name] is not None))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "trio loaded: []"


def test_backend_check_says_how_to_install_trio() -> None:
    result = run_without_trio(
        """
        from daffi._backends import require_backend
        from daffi.exceptions import InitializationError

        require_backend("asyncio")
        try:
            require_backend("trio")
        except InitializationError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == TRIO_HINT


def test_global_with_trio_backend_says_how_to_install_trio() -> None:
    result = run_without_trio(
        """
        from daffi import Global
        from daffi.exceptions import InitializationError

        try:
            Global(init_controller=True, address="memory://packaging-trio", backend="trio")
        except InitializationError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == TRIO_HINT


def test_trio_is_an_extra_that_the_tests_pull(project: Any) -> None:
    extras = project["optional-dependencies"]
    assert "trio" not in requirement_names(project["dependencies"])
    assert "trio" in requirement_names(extras["trio"])
    assert "trio" in requirement_names(extras["test"])


def test_anyio_is_pinned_to_the_tested_major_version(project: Any) -> None:
    from daffi._backends import TESTED_ANYIO

    (anyio,) = [req for req in project["dependencies"] if req.startswith("anyio")]
    low, high = TESTED_ANYIO
    assert anyio == f"anyio>={low[0]}.{low[1]},<{high[0]}"


def test_license_file_ships_with_the_declared_license(project: Any) -> None:
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert "License :: OSI Approved :: MIT License" in project["classifiers"]


def test_docs_extra_installs_what_mkdocs_yml_uses(project: Any) -> None:
    docs = requirement_names(project["optional-dependencies"]["docs"])
    assert {"mkdocs", "mkdocs-material", "mkdocstrings"} <= docs


def test_pytest_plugin_entry_point_is_named_after_its_module(project: Any) -> None:
    # Under another name, `-p daffi.pytest_plugin` with the entry point installed would
    # register the module twice, and pytest would stop with "Plugin already registered".
    assert project["entry-points"]["pytest11"] == {"daffi.pytest_plugin": "daffi.pytest_plugin"}
