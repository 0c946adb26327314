"""The opt-in to daffi 2's pickling: allow_pickle=True on both ends.

Run:    python pickle_client.py [ADDRESS]      (see payloads_service.py)
"""

import sys

from daffi import FG, Global

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://localhost:8888"


class Point:  # a plain class, defined in __main__: sent by value
    def __init__(self, x, y):
        self.x, self.y = x, y


if __name__ == "__main__":
    # daffi 2: g = Global(host="localhost", port=8888)
    g = Global(process_name="pickle-client", address=ADDRESS, allow_pickle=True)
    g.wait_process("payloads", timeout=10)

    account = g.call.open_account("ada") & FG
    print("open_account:", type(account).__name__, account.owner)
    print("types_of:", g.call.types_of(Point(1, 2), {"a"}) & FG)

    g.stop()
