"""Call the callbacks of server.py from a plain script.

Run:    python client.py [ADDRESS]      (the address server.py listens on)
"""

import sys

from daffi import FG, Global
from daffi.decorators import fetcher
from daffi.exceptions import RemoteCallError, TimeoutError, UnableToFindCandidate

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:8888"


@fetcher
def add(a: int, b: int) -> int:
    """Runs `add` in the process that offers it (the body is never run)."""


@fetcher
def divide(a: float, b: float) -> float: ...


@fetcher(FG(timeout=0.5))
def slow_echo(text: str, delay: float) -> str: ...


@fetcher
def not_offered_anywhere() -> None: ...


if __name__ == "__main__":
    g = Global(process_name="client", address=ADDRESS)
    g.wait_function("add", timeout=10)  # the server may still be starting

    print("add(1, 2) =", add(1, 2))
    print("divide(1, 4) =", divide(1, 4))
    print("slow_echo:", slow_echo("fast", 0))

    try:
        divide(1, 0)
    except ZeroDivisionError as exc:  # a remote built-in exception keeps its type
        assert isinstance(exc, RemoteCallError)  # ... and is a RemoteCallError too
        print("divide(1, 0) raised", exc.remote_type, "in", exc.process_name)

    try:
        slow_echo("late", 10)  # FG(timeout=0.5): the server cancels it too
    except TimeoutError:
        print("slow_echo timed out")

    try:
        not_offered_anywhere()
    except UnableToFindCandidate:
        print("nobody offers not_offered_anywhere")

    try:
        add(1)  # type: ignore[call-arg]  # type checkers flag it too
    except TypeError as exc:  # ArgumentsError: checked before anything is sent
        print("add(1) raised", type(exc).__name__)

    g.stop()
