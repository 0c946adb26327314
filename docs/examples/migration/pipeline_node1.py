"""daffi 2.0's pipeline, node-1: a callback that calls the next one by name with g.call.

daffi 2.0 injected the Global as a parameter `g: Global`; get_g() replaces it.

Run:    python pipeline_node1.py [ADDRESS]     (see pipeline_caller.py)
"""

import sys

from daffi import FG, Global, callback, get_g

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://localhost:8888"


@callback
def pipeline_cb1():  # daffi 2.0: def pipeline_cb1(g: Global):
    g = get_g()
    res = g.call.pipeline_cb2() & FG
    return res


if __name__ == "__main__":
    g = Global(process_name="node-1", address=ADDRESS)
    print("node-1 ready", flush=True)
    try:
        g.join()
    except KeyboardInterrupt:
        g.stop()
