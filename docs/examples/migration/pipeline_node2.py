"""daffi 2.0's pipeline, node-2: the Global also as the callback's `.g` (daffi 2.2.1's spelling).

Run:    python pipeline_node2.py [ADDRESS]     (see pipeline_caller.py)
"""

import sys

from daffi import FG, Global, callback

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://localhost:8888"


@callback
def pipeline_cb2():  # daffi 2.0: def pipeline_cb2(g: Global):
    res = pipeline_cb2.g.call.pipeline_cb3() & FG
    return res


if __name__ == "__main__":
    g = Global(process_name="node-2", address=ADDRESS)
    print("node-2 ready", flush=True)
    try:
        g.join()
    except KeyboardInterrupt:
        g.stop()
