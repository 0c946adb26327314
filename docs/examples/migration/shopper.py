"""daffi 2.2.0's getting-started client (decorator based), unchanged but for the address.

Note: Functions without a body are treated as proxies for remote callbacks.
    All arguments provided to this function will be sent to the remote service as-is.

Run:    python shopper.py [ADDRESS]      (the address shopping_service.py listens on)
"""

import logging
import sys

from daffi import Global
from daffi.decorators import alias, fetcher

logging.basicConfig(level=logging.INFO)

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://localhost:8888"


@fetcher
def get_items():
    """Return all items that are currently present in shopping list."""
    pass


@fetcher
def add_item(item):
    """Add new item to shopping list."""
    pass


@fetcher
def clear_items():
    """Add new item to shopping list."""
    pass


@alias("add_item")
@fetcher
def add_many_items(*items):
    """
    Alias for `add_item` callback.
    This function shows streaming capabilities for transferring data from one service to another.
    """
    for item in items:
        yield item


if __name__ == "__main__":
    # daffi 2: g = Global(host="localhost", port=8888)
    g = Global(address=ADDRESS)

    items = get_items()
    print(items)

    add_item("orange")
    items = get_items()
    print(items)

    add_many_items("bread", "cheese")
    items = get_items()
    print(items)

    clear_items()
    items = get_items()
    print(items)

    g.stop()
