"""Programs whose Global dies of an error inside daffi: they must exit non-zero.

Usage: crashing.py join|cli TRANSPORT...

An internal coroutine is replaced by one that raises ``InjectedCrash`` once a line arrives
on stdin (the test decides when the crash happens).

- join: a controller + node that prints "READY" and calls ``g.join()``; join() raises.
- cli: ``python -m daffi controller`` (run with runpy, as ``-m`` does) whose controller
  crashes.
"""

from __future__ import annotations

import runpy
import sys

import anyio
from _cli import transport_options

from daffi import Global
from daffi._controller import Controller
from daffi._session import Session


class InjectedCrash(RuntimeError):
    pass


async def crash_on_a_line(self: object, *args: object) -> None:
    await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    raise InjectedCrash(f"injected crash in {type(self).__name__}")


if __name__ == "__main__":
    style = sys.argv[1]
    if style == "join":
        options, _ = transport_options(sys.argv[2:])
        Session._heartbeat = crash_on_a_line  # type: ignore[method-assign]
        g = Global(process_name="crasher", init_controller=True, **options)
        print("READY", flush=True)
        g.join()
        print("JOIN RETURNED", flush=True)  # must not happen
    else:
        Controller._reap_silent_peers = crash_on_a_line  # type: ignore[method-assign]
        sys.argv = ["daffi", "controller", *sys.argv[2:]]
        runpy.run_module("daffi", run_name="__main__", alter_sys=True)
