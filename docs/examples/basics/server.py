"""A controller that also offers callbacks.

Run:    python server.py [ADDRESS]
ADDRESS is where the controller listens: tcp://127.0.0.1:8888 (the default) or
unix:///some/private/dir/daffi.sock. Start client.py, asyncio_app.py or trio_app.py
with the same ADDRESS. Stop the server with Ctrl+C.
"""

import sys

import anyio

from daffi import Global
from daffi.decorators import callback

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:8888"


@callback
def add(a: int, b: int) -> int:
    return a + b


@callback
def divide(a: float, b: float) -> float:
    return a / b  # b == 0 raises ZeroDivisionError in the caller's process


@callback
async def slow_echo(text: str, delay: float) -> str:
    try:
        await anyio.sleep(delay)
    except anyio.get_cancelled_exc_class():
        print(f"slow_echo({text!r}) was cancelled by its caller", flush=True)
        raise
    return text


@callback
async def time_left() -> float | None:
    """Seconds until the caller's deadline (the callee runs under it), or None."""
    deadline = anyio.current_effective_deadline()
    return None if deadline == float("inf") else deadline - anyio.current_time()


if __name__ == "__main__":
    g = Global(process_name="server", init_controller=True, address=ADDRESS)
    print(f"server ready on {g.address}", flush=True)
    try:
        g.join()
    except KeyboardInterrupt:
        g.stop()
