"""Project tasks: `nox` runs lint, typecheck, tests and docs; `nox -s demo` runs the main demo."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True

RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (in-process, transports and process-level), asyncio and trio.

    Four pytest-xdist workers on two cores, each test file whole in one worker: most tests
    wait on the network, on timers or on other processes rather than on the CPU (the whole
    suite uses about two thirds of one core on average), and the seed's programs, which all
    use the fixed port 8888, stay in one file, one after another. Arguments replace these
    defaults (``nox -s tests -- tests/unit`` runs serially).
    """
    session.install("-e", ".[test]")
    session.run("pytest", *(session.posargs or ["-n", "4", "--dist", "loadfile"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(RUFF)
    session.run("ruff", "check", "daffi", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "daffi", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package (with the trio and nats extras, and pytest, whose plugin
    daffi ships: all are imported by daffi's modules that use them)."""
    session.install(MYPY, "-e", ".[trio,nats]", "pytest>=8")
    session.run("mypy", "--strict", "daffi")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml) built in strict mode: a warning fails the build
    (broken links and anchors, docstrings mkdocstrings cannot read, pages outside the nav).
    The site goes to a temporary directory; `nox -s docs -- --site-dir site` keeps it."""
    session.install(".[docs]")
    site = ["--site-dir", str(Path(session.create_tmp()) / "site")]
    session.run(
        "mkdocs", "build", "--strict", *(session.posargs or site), env={"NO_MKDOCS_2_WARNING": "1"}
    )


README_PROGRAM = re.compile(r"`(server|client)\.py`:\n\n```python\n(.*?)```", re.DOTALL)
README_ASYNC_APP = re.compile(
    r"In an asyncio or trio application:\n\n```python\n(.*?)```", re.DOTALL
)
ON_TRIO = 'anyio.run(main)  # or anyio.run(main, backend="trio")'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, server: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server.py exited with {server.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server.py did not listen on port {port} within {seconds} s")


def _run_first_program(session: nox.Session, directory: Path, *, trio: bool) -> None:
    """README's "A first program": server.py in the background, client.py prints 3; with
    ``trio``, the README's async example on trio (``anyio.run(main, backend="trio")``) too.

    The programs are read from README.md, so this checks what the README shows; only the
    port changes (8888 -> a free one), so that the run does not clash with the test suite."""
    readme = Path("README.md").read_text(encoding="utf-8")
    programs = dict(README_PROGRAM.findall(readme))
    if set(programs) != {"server", "client"}:
        session.error("README.md has no `server.py` and `client.py` programs to run")
    clients = ["client.py"]
    if trio:
        app = README_ASYNC_APP.search(readme)
        if app is None or ON_TRIO not in app.group(1):
            session.error(f"README.md has no async example ending with {ON_TRIO!r}")
        programs["trio_app"] = app.group(1).replace(ON_TRIO, 'anyio.run(main, backend="trio")')
        clients.append("trio_app.py")
    port = _free_port()
    for name, source in programs.items():
        (directory / f"{name}.py").write_text(source.replace("8888", str(port)), encoding="utf-8")
    python = str(Path(session.bin) / "python")
    server = subprocess.Popen([python, "server.py"], cwd=directory)
    try:
        _wait_for_port(port, server, seconds=30)
        for client in clients:
            done = subprocess.run(
                [python, client], cwd=directory, capture_output=True, text=True, timeout=60
            )
            session.log(f"{client} printed {done.stdout.strip()!r}")
            if done.returncode != 0 or done.stdout.strip() != "3":
                session.error(f"{client} failed ({done.returncode}): {done.stderr}")
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(10)
        if server.poll() is None:
            server.kill()
            server.wait()


@nox.session(reuse_venv=False)
def install(session: nox.Session) -> None:
    """A clean virtualenv installs daffi from this checkout with the README's command and
    runs the README's first program, without the trio extra and then with it (the second
    run also runs the README's async example on trio). Needs the package index."""
    readme = Path("README.md").read_text(encoding="utf-8")
    for command in ("pip install .", "pip install '.[trio]'"):
        if f"\n{command} " not in readme:
            session.error(f"README.md no longer shows {command!r}: update this session")
    directory = Path(session.create_tmp()) / "first-program"
    directory.mkdir(parents=True, exist_ok=True)
    checkout = os.getcwd()
    session.run("python", "-m", "pip", "install", checkout)  # README: pip install .
    session.run("python", "-c", "import importlib.util as u; assert u.find_spec('trio') is None")
    _run_first_program(session, directory, trio=False)
    session.run("python", "-m", "pip", "install", f"{checkout}[trio]")  # pip install '.[trio]'
    session.run("python", "-c", "import trio; print('trio', trio.__version__)")
    _run_first_program(session, directory, trio=True)


@nox.session
def demo(session: nox.Session) -> None:
    """The main demo: controller, callback node and client as three processes."""
    session.install("-e", ".")
    session.run("python", "-m", "daffi", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: figures beside a floor measured in the same run (bench_tls makes its
    certificates with trustme; bench_nats needs nats-server, and installs the nats extra)."""
    session.install("-e", ".[nats]", "trustme")
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
