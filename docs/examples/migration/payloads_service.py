"""Values without pickle: what arrives where daffi 2 pickled everything.

Run:    python payloads_service.py [ADDRESS]
        python payloads_client.py [ADDRESS]
        python pickle_client.py [ADDRESS]
"""

import sys

from daffi import Global, callback

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://localhost:8888"


class Account:  # a plain class: MessagePack cannot carry it
    def __init__(self, owner):
        self.owner = owner


@callback
def pair():
    return (1, 2)


@callback
def types_of(values, labels):  # no annotations: plain data arrives
    return f"{type(values).__name__}, {type(labels).__name__}"


@callback
def annotated_types_of(values: tuple[int, ...], labels: set[str]) -> str:
    return f"{type(values).__name__}, {type(labels).__name__}"


@callback
def open_account(owner):
    return Account(owner)  # pickled for a caller that allows pickle too


if __name__ == "__main__":
    # allow_pickle=True: this process may send and accept pickled values (daffi 2 always did)
    g = Global(process_name="payloads", init_controller=True, address=ADDRESS, allow_pickle=True)
    print(f"payloads service ready on {g.address}", flush=True)
    try:
        g.join()
    except KeyboardInterrupt:
        g.stop()
