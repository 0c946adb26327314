"""daffi 2.2.0's getting-started service (decorator based), unchanged but for the address.

Run:    python shopping_service.py [ADDRESS]
ADDRESS: tcp://localhost:8888 (the default, daffi 2's host and port) or
unix:///some/private/dir/daffi.sock. Then run shopper.py with the same ADDRESS.
"""

import logging
import sys

from daffi import Global
from daffi.decorators import callback

logging.basicConfig(level=logging.INFO)

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://localhost:8888"

shopping_list = []


@callback
def get_items():
    """Return all items that are currently present in shopping list"""
    return shopping_list


@callback
def add_item(item):
    """Add new item to shopping list"""
    shopping_list.append(item)


@callback
def clear_items():
    """Clear shopping list"""
    shopping_list.clear()


if __name__ == "__main__":
    # daffi 2: Global(init_controller=True, host="localhost", port=8888).join()
    g = Global(init_controller=True, address=ADDRESS)
    print(f"shopping service ready on {g.address}", flush=True)
    try:
        g.join()
    except KeyboardInterrupt:
        g.stop()
