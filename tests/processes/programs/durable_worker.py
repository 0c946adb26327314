"""An executor node that keeps durable schedules: ``tick(tag)`` appends ``"<tag> <time>"``
to a file, one line per run, written in one call so a kill never leaves half a line.

    python durable_worker.py SOCK_DIR STATE_DIR BACKEND RUNS_FILE
"""

import logging
import os
import sys
import time

from daffi import Global
from daffi.decorators import callback

logging.basicConfig(level=logging.INFO)

SOCK_DIR, STATE_DIR, BACKEND, RUNS_FILE = sys.argv[1:5]
fd = os.open(RUNS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


@callback
async def tick(tag: str) -> None:
    os.write(fd, f"{tag} {time.time()!r}\n".encode())


if __name__ == "__main__":
    g = Global(process_name="worker", unix_sock_path=SOCK_DIR, state_dir=STATE_DIR, backend=BACKEND)
    print("READY", flush=True)
    g.join()
