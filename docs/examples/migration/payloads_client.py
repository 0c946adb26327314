"""Tuples and sets arrive as lists unless annotated; unencodable values are refused.

Run:    python payloads_client.py [ADDRESS]      (see payloads_service.py)
"""

import sys

from daffi import FG, Global, fetcher

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://localhost:8888"


@fetcher
def pair() -> tuple[int, int]: ...  # the annotation makes the result a tuple again


class Account:
    def __init__(self, owner):
        self.owner = owner


if __name__ == "__main__":
    g = Global(process_name="payloads-client", address=ADDRESS)
    g.wait_process("payloads", timeout=10)

    print("g.call.pair():", g.call.pair() & FG)  # daffi 2: (1, 2)
    print("annotated fetcher pair():", pair())
    print("unannotated callback got:", g.call.types_of((1, 2), {"a"}) & FG)
    print("annotated callback got:", g.call.annotated_types_of((1, 2), {"a"}) & FG)

    try:
        g.call.types_of(Account("ada"), set()) & FG
    except TypeError as exc:  # PayloadEncodeError: refused before anything is sent
        print("Account refused before sending:", type(exc).__name__)

    try:
        g.call.open_account("ada") & FG
    except TypeError as exc:  # the result could not be sent back without pickle
        print("Account result refused:", type(exc).__name__)

    g.stop()
