"""A client whose call raises in the server: the remote ValueError is caught here.

Usage: client_errors.py TRANSPORT...
"""

from __future__ import annotations

import sys

from _cli import transport_options

from daffi import Global, RemoteCallError
from daffi.decorators import fetcher


@fetcher
def boom(message): ...


if __name__ == "__main__":
    options, _ = transport_options(sys.argv[1:])
    g = Global(process_name="client-errors", **options)
    g.wait_function("boom", timeout=10)
    try:
        boom("x")
    except ValueError as exc:
        print("CAUGHT", type(exc).__name__)
        print("IS_REMOTE_CALL_ERROR", isinstance(exc, RemoteCallError))
        print("REMOTE_TYPE", getattr(exc, "remote_type", None))
        print("REMOTE_MESSAGE", getattr(exc, "remote_message", None))
        print("PROCESS", getattr(exc, "process_name", None))
        print("TRACEBACK_NAMES_CALLBACK", "boom" in getattr(exc, "remote_traceback", ""))
        print("STR", str(exc).splitlines()[0])
    else:
        print("NOT RAISED")
    g.stop()
    print("DONE")
