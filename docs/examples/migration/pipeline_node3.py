"""daffi 2.0's pipeline, node-3: the end of the chain, unchanged.

Run:    python pipeline_node3.py [ADDRESS]     (see pipeline_caller.py)
"""

import sys

from daffi import Global, callback

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://localhost:8888"


@callback
def pipeline_cb3():
    return "my secret sting"


if __name__ == "__main__":
    g = Global(process_name="node-3", address=ADDRESS)
    print("node-3 ready", flush=True)
    try:
        g.join()
    except KeyboardInterrupt:
        g.stop()
