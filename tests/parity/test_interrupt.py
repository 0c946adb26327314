"""Behaviour 3 over every path: ``KeyboardInterrupt`` in a sync caller blocked in an FG call
sends ``Cancel`` and leaves no pending entry.

The caller is a child process (``interrupted_caller.py``, a sync-face Global of the cell's
backend) that the test interrupts with SIGINT while it waits for ``slow``; the callee (and
the controller, unless it is the child) run in the test's loop. On the callee side, an
``async`` callee must see the cancellation; a ``def`` callee's result must be dropped. In
the caller, which catches the interrupt and carries on: no pending entry, and the next calls
get their own results.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from daffi import Global

from ._callbacks import Probe, callee_callbacks
from ._net import CALLEE_KINDS, TOPOLOGIES, registry_with, wait_event, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(40), pytest.mark.processes]

PROGRAM = Path(__file__).with_name("interrupted_caller.py")


class Child:
    """The caller process: its stdout in a file, read line by line with deadlines."""

    def __init__(self, args: list[str], workdir: str) -> None:
        self.out_path = Path(workdir) / "child.out"
        self.err_path = Path(workdir) / "child.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, str(PROGRAM), *args],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
            )

    def describe(self) -> str:
        return (
            f"child stdout:\n{self.out_path.read_text(errors='replace')}\n"
            f"child stderr:\n{self.err_path.read_text(errors='replace')[-3000:]}"
        )

    async def line(self, pattern: str, timeout: float) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for text in self.out_path.read_text(errors="replace").splitlines():
                match = regex.search(text)
                if match:
                    return match
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no line /{pattern}/ from the caller\n{self.describe()}")
            await anyio.sleep(0.01)

    def tell(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text.encode() + b"\n")
        self.popen.stdin.flush()

    def stop(self) -> None:
        """Terminate, then kill, by PID; always reaps the process."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(3)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(3)
        if self.popen.stdin is not None:
            self.popen.stdin.close()


@asynccontextmanager
async def child(sock_dir: str, topology: str, backend: str) -> AsyncIterator[Child]:
    workdir = tempfile.mkdtemp(prefix="dfpar-out-", dir="/tmp")
    proc = Child([sock_dir, topology, backend], workdir)
    try:
        yield proc
    finally:
        proc.stop()
        for path in (proc.out_path, proc.err_path):
            path.unlink(missing_ok=True)
        os.rmdir(workdir)


@asynccontextmanager
async def callee_side(
    sock_dir: str, topology: str, probe: Probe, callee_kind: str
) -> AsyncIterator[Global]:
    options = dict(
        process_name="callee",
        unix_sock_path=sock_dir,
        connect_timeout=10,
        registry=registry_with(callee_callbacks(callee_kind, probe)),
    )
    if topology == "ctrl-in-callee":
        async with Global(init_controller=True, **options) as g:
            yield g
    elif topology == "ctrl-apart":
        async with (
            Global("ctrl", init_controller=True, init_node=False, unix_sock_path=sock_dir) as ctrl,
            Global(**options) as g,
        ):
            yield ctrl
    else:
        async with Global(**options) as g:
            yield g


@pytest.mark.parametrize("callee_kind", CALLEE_KINDS)
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_keyboard_interrupt_in_sync_caller(
    sock_dir: str, anyio_backend: str, topology: str, callee_kind: str
) -> None:
    probe = Probe()
    problems: list[str] = []
    try:
        if topology == "ctrl-in-caller":
            # The child is the controller: start it first, then the callee joins it.
            async with child(sock_dir, topology, anyio_backend) as caller:
                await caller.line(r"^started$", 15)
                async with callee_side(sock_dir, topology, probe, callee_kind):
                    await _interrupt(caller, probe, callee_kind, None, problems)
        else:
            async with (
                callee_side(sock_dir, topology, probe, callee_kind) as ctrl,
                child(sock_dir, topology, anyio_backend) as caller,
            ):
                await _interrupt(caller, probe, callee_kind, ctrl, problems)
    finally:
        probe.release.set()
    assert not problems, "; ".join(problems)


async def _interrupt(
    caller: Child, probe: Probe, callee_kind: str, ctrl: Global | None, problems: list[str]
) -> None:
    await caller.line(r"^calling$", 15)
    assert await wait_event(probe.started_event("first"), 5), "the callee never started"
    caller.popen.send_signal(signal.SIGINT)
    interrupted = await caller.line(r"^interrupted pending=(\d+)$", 5)
    if interrupted[1] != "0":
        problems.append(
            f"after KeyboardInterrupt the caller's pending table holds {interrupted[1]} entry"
        )
    if callee_kind == "async":
        if not await wait_event(probe.cancelled_event("first"), 2):
            problems.append("the async callee was not cancelled within 2 s of the interrupt")
    else:
        probe.release.set()  # the def callee finishes now; its result must go nowhere
        assert await wait_event(probe.finished_event("first"), 2)
    if ctrl is not None:
        core = ctrl._runtime.controller
        assert core is not None

        def routes() -> list[tuple[str, int]]:
            return [key for key in list(core.router) if key[0] == "caller"]

        if not await wait_until(lambda: not routes(), 1.0):
            problems.append(f"the controller still routes the interrupted call: {routes()}")
    await anyio.sleep(0.2)  # room for a stale reply to reach the caller
    caller.tell("go")
    after = await caller.line(r"^after echo=(\S+) second=(\S+) pending=(\d+) routes=(-?\d+)$", 10)
    if (after[1], after[2]) != ("after", "done-second"):
        problems.append(f"follow-up calls got echo={after[1]!r} second={after[2]!r}")
    if after[3] != "0":
        problems.append(f"the caller's pending table holds {after[3]} entries after the calls")
    if after[4] not in ("0", "-1"):
        problems.append(f"the caller's controller still routes {after[4]} of its calls")
    try:
        code = await anyio.to_thread.run_sync(caller.popen.wait, 5)
    except subprocess.TimeoutExpired:
        problems.append("the caller did not exit within 5 s of stopping")
    else:
        if code != 0:
            problems.append(f"the caller exited with {code}\n{caller.describe()}")
