"""Two Globals in one process, each with its own callback registry (useful in tests).

Run:    python several_globals.py      (it picks a free TCP port on 127.0.0.1)
"""

from daffi import Global
from daffi.decorators import fetcher
from daffi.exceptions import UnableToFindCandidate
from daffi.registry import CallbackRegistry


def double(x: int) -> int:
    return 2 * x


@fetcher
def compute(x: int) -> int: ...


offered_by_b = CallbackRegistry()
offered_by_b.add(double, name="compute")  # the name defaults to the function's __name__

# `a` runs the controller on a free port and offers nothing; `b` offers "compute".
a = Global(
    process_name="a",
    init_controller=True,
    address="tcp://127.0.0.1:0",
    registry=CallbackRegistry(),
)
b = Global(process_name="b", address=f"tcp://127.0.0.1:{a.port}", registry=offered_by_b)

with a.as_current():  # fetchers in this block call through `a`
    a.wait_function("compute", timeout=10)
    print("through a:", compute(21))

with b.as_current():  # `b` cannot call itself: no *other* process offers "compute"
    try:
        compute(21)
    except UnableToFindCandidate:
        print("through b: nobody else offers compute")

b.stop()
a.stop()
