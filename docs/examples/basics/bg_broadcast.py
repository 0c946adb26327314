"""Background calls (BG) and calls to every node (BROADCAST); see worker.py for the setup.

Run:    python bg_broadcast.py [ADDRESS]     (the controller's address)
"""

import sys

from daffi import BG, BROADCAST, Global
from daffi.decorators import fetcher
from daffi.exceptions import RemoteCallError

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:8888"


@fetcher(BG(timeout=10))
def slow_square(x: int) -> int: ...


@fetcher(BROADCAST(timeout=10))
def whoami() -> str: ...


@fetcher(BROADCAST)
def check_disk(path: str) -> str: ...


@fetcher(BROADCAST(return_result=False))
def note(text: str) -> None: ...


if __name__ == "__main__":
    g = Global(process_name="bg-client", address=ADDRESS)
    g.wait_process("worker-1", timeout=10)
    g.wait_process("worker-2", timeout=10)

    # BG: an AsyncResult at once; the calls are spread over the workers and run concurrently.
    pending = [slow_square(x) for x in range(6)]
    print("squares:", [result.get() for result in pending])  # get() waits for each
    print("all ready:", all(result.ready for result in pending))

    # Pin a call to one process with receiver=.
    result = slow_square.call(9, exec_modifier=BG(receiver="worker-2"))
    print("on worker-2:", result.get(timeout=10))

    # BROADCAST: every node offering the callback (but this one), results by process name.
    print("whoami:", whoami())

    # If some nodes fail, RemoteCallError carries the successes and the failures.
    try:
        check_disk("/data")
    except RemoteCallError as exc:
        print("succeeded:", exc.results)
        print("failed:", {name: str(error) for name, error in exc.errors.items()})

    # Fire and forget: returns None; nothing reports whether it arrived.
    print("note:", note("hello"))

    g.stop()
