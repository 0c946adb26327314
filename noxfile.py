"""Project tasks: `nox` runs lint, typecheck and tests; `nox -s demo` runs the main demo."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (in-process, transports and process-level), asyncio and trio.

    Two pytest-xdist workers, each test file whole in one worker: most tests wait on the
    network or on timers rather than on the CPU, and the seed's programs, which all use the
    fixed port 8888, stay in one file, one after another. Arguments replace these defaults
    (``nox -s tests -- tests/unit`` runs serially).
    """
    session.install("-e", ".[test]")
    session.run("pytest", *(session.posargs or ["-n", "2", "--dist", "loadfile"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(RUFF)
    session.run("ruff", "check", "daffi", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "daffi", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install(MYPY, "-e", ".")
    session.run("mypy", "--strict", "daffi")


@nox.session
def demo(session: nox.Session) -> None:
    """The main demo: controller, callback node and client as three processes."""
    session.install("-e", ".")
    session.run("python", "-m", "daffi", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: figures beside a floor measured in the same run (bench_tls makes its
    certificates with trustme)."""
    session.install("-e", ".", "trustme")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(venv_backend="none")
def compare(session: nox.Session) -> None:
    """Side by side with daffi 2.2.1 and daffi 3.0.1 (each in a venv of its own, built once).

    Writes benchmarks/results/results.{md,jsonl}; `nox -s compare -- --quick` for a short run.
    """
    session.run("python", "-m", "benchmarks.compare.run", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """The fuzz tests (tests/fuzz) with many more examples than the default suite runs."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/fuzz", *session.posargs, env={"DAFFI_FUZZ_PROFILE": "long"})


@nox.session
def attacks(session: nox.Session) -> None:
    """Every attack of the chaos tests against a controller process, on both backends: a
    table of the legitimate client's calls and the controller's RSS per attack."""
    session.install("-e", ".")
    session.run("python", "benchmarks/attacks.py", "--backend", "both", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """10 minutes of load on a controller, 200 connections and churn: zero lost calls, RSS
    bounded (`nox -s soak -- --minutes 1 --backend trio` for another run)."""
    session.install("-e", ".")
    session.run("python", "benchmarks/soak.py", *session.posargs)
