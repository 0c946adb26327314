"""daffi 2.0's broadcasting page, one of the nodes; run it as node-1, node-2 and node-3.

Run:    python broadcast_node.py NAME [ADDRESS]     (see broadcast_caller.py)
"""

import sys

from daffi import Global, callback

proc_name = sys.argv[1]  # node-1, node-2 or node-3
ADDRESS = sys.argv[2] if len(sys.argv) > 2 else "tcp://localhost:8888"

received = []


@callback
def my_callback(some_string: str) -> str:
    return some_string + "-" + proc_name


@callback
def receive(item: str) -> None:
    received.append(item)


@callback
def all_received() -> list[str]:
    return received


g = Global(process_name=proc_name, address=ADDRESS)  # daffi 2.0: Global() (a Unix socket)
print(f"{proc_name} ready", flush=True)
try:
    g.join()
except KeyboardInterrupt:
    g.stop()
