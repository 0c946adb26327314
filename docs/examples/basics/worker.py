"""A node offering callbacks; run several, each with its own name.

Run:    python -m daffi controller --host 127.0.0.1 --port 8888
        python worker.py worker-1 [ADDRESS]
        python worker.py worker-2 [ADDRESS]
        python bg_broadcast.py [ADDRESS]
"""

import sys
import time

from daffi import Global
from daffi.decorators import callback

NAME = sys.argv[1]
ADDRESS = sys.argv[2] if len(sys.argv) > 2 else "tcp://127.0.0.1:8888"


@callback
def slow_square(x: int) -> int:
    time.sleep(0.2)  # sync callbacks run in worker threads: several calls at once
    return x * x


@callback
def whoami() -> str:
    return NAME


@callback
def check_disk(path: str) -> str:
    if NAME == "worker-2":
        raise OSError(f"{path}: disk full")
    return f"{path}: ok"


@callback
def note(text: str) -> None:
    print(f"{NAME} got note: {text}", flush=True)


if __name__ == "__main__":
    g = Global(process_name=NAME, address=ADDRESS)
    print(f"{NAME} ready", flush=True)
    try:
        g.join()
    except KeyboardInterrupt:
        g.stop()
