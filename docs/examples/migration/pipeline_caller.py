"""daffi 2.0's pipeline, the caller (and the controller), unchanged but for the address.

Run:    python pipeline_caller.py [ADDRESS]
        python pipeline_node1.py [ADDRESS]
        python pipeline_node2.py [ADDRESS]
        python pipeline_node3.py [ADDRESS]
"""

import sys

from daffi import FG, Global, fetcher

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://localhost:8888"

proc_name = "node-4"


@fetcher(FG)
def pipeline_cb1():
    pass


g = Global(process_name=proc_name, init_controller=True, address=ADDRESS)

# Wait all processes to start
for proc in ("node-1", "node-2", "node-3"):
    g.wait_process(proc)

result = pipeline_cb1()

print(result)

# The same call by name, with no fetcher: g.call
print(g.call.pipeline_cb1() & FG)

g.stop()
