"""Count the runs of a node's callbacks with daffi.metrics.CallbackStats, and print them.

Two Globals in one process: "client" runs the controller, "worker" offers three callbacks
and gives a record of each of their runs to its metrics hook.

Run:    python docs/examples/observability/stats.py
"""

import time

from daffi import Global
from daffi.decorators import alias, fetcher
from daffi.metrics import CallbackStats, CallRecord
from daffi.registry import CallbackRegistry

# ---- the worker's callbacks


def add(a: int, b: int) -> int:
    return a + b


def divide(a: float, b: float) -> float:
    return a / b


def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


# ---- the metrics hook: counts for every run, and a line for each slow one

stats = CallbackStats()


def on_run(record: CallRecord) -> None:
    """Called once per run, in the thread that ran the callback: keep it quick."""
    stats(record)
    if record.duration > 0.1:
        print(f"slow: {record.callback} for {record.caller} ({record.outcome})")


# ---- the client's fetchers


@alias("add")
@fetcher
def add_remote(a: int, b: int) -> int: ...


@alias("divide")
@fetcher
def divide_remote(a: float, b: float) -> float: ...


@alias("nap")
@fetcher
def nap_remote(seconds: float) -> str: ...


offered = CallbackRegistry()
for function in (add, divide, nap):
    offered.add(function)

client = Global(
    "client", init_controller=True, address="tcp://127.0.0.1:0", registry=CallbackRegistry()
)
worker = Global(
    "worker", address=f"tcp://127.0.0.1:{client.port}", registry=offered, metrics=on_run
)

with client.as_current():
    client.wait_function("nap", timeout=10)
    for i in range(5):
        add_remote(i, i)
    divide_remote(1, 4)
    try:
        divide_remote(1, 0)
    except ZeroDivisionError:
        print("divide(1, 0) raised ZeroDivisionError")
    nap_remote(0.15)
    nap_remote(0.25)

worker.stop()
client.stop()

# ---- the summary: durations in milliseconds, p90 from the histogram (an upper bound)

print("callback   runs  errors  cancelled  mean ms   p90 ms   max ms")
for name, summary in sorted(stats.summary().items()):
    print(
        f"{name:10}{summary.runs:5}{summary.errors:8}{summary.cancelled:11}"
        f"{summary.mean_seconds * 1000:9.3f}{summary.quantile(0.9) * 1000:9.3f}"
        f"{summary.max_seconds * 1000:9.3f}"
    )
