"""daffi 2.0's broadcasting page, the caller (and the controller).

Run:    python broadcast_caller.py [ADDRESS]
        python broadcast_node.py node-1 [ADDRESS]   (and node-2, node-3)
"""

import sys

from daffi import BROADCAST, Global, fetcher
from daffi.decorators import __body_unknown__  # daffi 2.0's page imported it from daffi

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://localhost:8888"

proc_name = "node-4"


@fetcher(BROADCAST(return_result=True))
def my_callback(some_string: str) -> str:
    __body_unknown__(some_string)


# A generator fetcher streams its items to ONE node under FG (the default), as every
# fetcher call goes to one node; daffi 2 sent them to every node. BROADCAST sends to all.
@fetcher(BROADCAST)  # daffi 2: @fetcher
def receive(*items: str):
    yield from items


g = Global(process_name=proc_name, init_controller=True, address=ADDRESS)

# Wait all processes to start
for proc in ("node-1", "node-2", "node-3"):
    g.wait_process(proc)

result = my_callback(some_string="abc")

print(result)

# g style callback execution instead of `fetcher`: the same call, twice.
print(g.call.my_callback(some_string="abc").broadcast(return_result=True))
print(g.call.my_callback(some_string="abc") & BROADCAST(return_result=True))

receive("bread", "cheese")
print(g.call.all_received().broadcast(return_result=True))

g.stop()
