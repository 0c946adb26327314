"""The errors a first sync script meets, in a process of its own (no other Global around):
a fetcher called before any Global or after ``g.stop()``, and no controller at all."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from .conftest import free_tcp_port, short_temp_dir

pytestmark = [pytest.mark.processes, pytest.mark.timeout(60)]

FETCHER = """
from daffi import Global
from daffi.decorators import fetcher

@fetcher
def add(a, b): ...

def report(call):
    try:
        call()
    except Exception as exc:
        print(f"RAISED {type(exc).__name__}: {exc}", flush=True)
"""


def run(body: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(FETCHER) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )


def test_a_fetcher_called_before_any_global_says_to_create_one() -> None:
    done = run("report(lambda: add(1, 2))\n")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "RAISED GlobalContextError: no daffi Global is running in this process: create "
        "daffi.Global(...) (or enter `async with Global(...)`) before calling fetchers"
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_fetcher_called_after_stop_names_the_stopped_global(backend: str) -> None:
    directory = short_temp_dir()
    try:
        done = run(
            f"""
            g = Global("worker", init_controller=True, unix_sock_path={directory!r},
                       backend={backend!r})
            g.stop()
            report(lambda: add(1, 2))
            """
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "RAISED GlobalContextError: Global 'worker' can no longer make or accept remote calls "
        "because it was stopped; create a new daffi.Global(...) (or enter "
        "`async with Global(...)`) to call fetchers again"
    )


def test_a_first_script_without_a_controller_is_warned_at_once() -> None:
    port = free_tcp_port()
    done = run(
        f"""
        import logging, time
        logging.basicConfig(format="%(relativeCreated)d %(levelname)s %(message)s")
        started = time.monotonic()
        report(lambda: Global("first", host="127.0.0.1", port={port}, connect_timeout=3))
        print(f"AFTER {{time.monotonic() - started:.1f}}", flush=True)
        """
    )

    assert done.returncode == 0, done.stderr
    warning = re.search(r"^(\d+) WARNING (node 'first': .*)$", done.stderr, re.MULTILINE)
    assert warning is not None, done.stderr
    assert int(warning[1]) < 2000  # ms since the script loaded logging: at once
    assert f"controller at tcp://127.0.0.1:{port} is not reachable" in warning[2]
    assert "keeps trying for up to 3 s (connect_timeout)" in warning[2]
    lines = done.stdout.splitlines()
    assert lines[0].startswith(
        f"RAISED InitializationError: node 'first' could not reach a controller at "
        f"tcp://127.0.0.1:{port} within 3"
    ), done.stdout
    assert "(connect_timeout)" in lines[0]
    assert float(lines[1].split()[1]) >= 2.5  # it did keep trying until connect_timeout
