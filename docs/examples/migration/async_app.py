"""A daffi 2 style async application: `Global(...)` inside `async def main()`, no `async with`.

The controller's port is known as soon as the constructor returns, and daffi runs in this
app's own event loop, on its library: run it on asyncio or on trio.

Run:    python async_app.py asyncio|trio        (prints the port; see async_client.py)
"""

import sys

import anyio
import sniffio

from daffi import FG, Global, callback, get_g

BACKEND = sys.argv[1] if len(sys.argv) > 1 else "asyncio"

finished = None  # an event, set by the callback `finish`


@callback
async def slow_add(a: int, b: int) -> int:
    if sniffio.current_async_library() == "trio":
        import trio

        await trio.sleep(0.01)  # a trio app's callbacks run on trio
    else:
        import asyncio

        await asyncio.sleep(0.01)
    return a + b


@callback
async def library() -> str:
    return sniffio.current_async_library()


@callback
async def relay(x: int) -> int:
    # daffi 2: res = g.call.double(x) & FG
    res = await get_g().call.double(x).fg_async()
    return res


@callback
async def client_library() -> str:
    return await get_g().call.library_of_client().fg_async()


@callback
async def relay_daffi2_style(x: int) -> int:
    return get_g().call.double(x) & FG  # refused: it would block this loop


@callback
async def finish() -> None:
    finished.set()


async def main() -> None:
    global finished
    finished = anyio.Event()
    g = Global(process_name="async-app", init_controller=True, host="127.0.0.1")
    print(f"async app listening on port {g.port}", flush=True)
    await finished.wait()
    await g.stop_async()
    print("async app stopped", flush=True)


anyio.run(main, backend=BACKEND)
