"""A standalone controller on a Unix socket in the directory given as argv[1]."""

import logging
import sys

from daffi import Global

logging.basicConfig(level=logging.INFO)

if __name__ == "__main__":
    g = Global(
        process_name="controller", init_controller=True, init_node=False, unix_sock_path=sys.argv[1]
    )
    print("READY", flush=True)
    g.join()
