"""A daffi 2 style async client of async_app.py that makes a blocking daffi call first.

A blocking call from the app's loop before daffi started there (here `g.wait_function`)
starts daffi in a thread of its own, on the app's library, as daffi 2 ran it; blocking calls
work from then on (they block the loop while they wait), and so do the `_async` twins.

Run:    python async_client.py asyncio|trio PORT
"""

import sys

import anyio
import sniffio

from daffi import BG, FG, Global, GlobalContextError, callback

BACKEND = sys.argv[1]
PORT = int(sys.argv[2])


@callback
def double(x: int) -> int:
    return 2 * x


@callback
async def library_of_client() -> str:
    return sniffio.current_async_library()  # daffi's thread runs the app's library


async def main() -> None:
    g = Global(process_name="async-client", host="127.0.0.1", port=PORT)
    g.wait_function("slow_add", timeout=10)  # blocking, as in daffi 2

    print("slow_add:", g.call.slow_add(1, 2) & FG)
    print("slow_add, awaited:", await g.call.slow_add(3, 4).fg_async())
    print("the app's callbacks run on:", await g.call.library().fg_async())
    print("relay:", await g.call.relay(21).fg_async())
    print("this client's callbacks run on:", await g.call.client_library().fg_async())
    try:
        await g.call.relay_daffi2_style(21).fg_async()
    except GlobalContextError as exc:  # raised in the app's callback, re-raised here
        print("daffi 2 style relay refused:", type(exc).__name__)
        print("  names the twin:", "await g.call.double(...).fg_async()" in str(exc))

    g.call.finish() & BG(return_result=False)
    await g.stop_async()


anyio.run(main, backend=BACKEND)
