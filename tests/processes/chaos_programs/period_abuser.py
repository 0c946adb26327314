"""Asks for schedules with intervals below the minimum.

Usage: period_abuser.py BACKEND SOCK_DIR [--tries 50]

``PERIOD(interval=0.0001)`` is below daffi's floor of 1 ms: building it must raise
``InitializationError``. ``PERIOD(interval=0.01)`` is below the server's
``min_period_interval`` (50 ms): the server must refuse it, ``ArgumentsError``. Each is
tried ``--tries`` times. Prints "RESULT <case> <json {outcome: count}>" for both, then
"DONE".
"""

from __future__ import annotations

import json
from collections import Counter

from _common import parser, say

from daffi import PERIOD, Global
from daffi.decorators import fetcher
from daffi.registry import CallbackRegistry


@fetcher
def tick(): ...


if __name__ == "__main__":
    cli = parser(__doc__)
    cli.add_argument("--tries", type=int, default=50)
    args = cli.parse_args()
    g = Global(
        "period-abuser",
        registry=CallbackRegistry(),
        backend=args.backend,
        unix_sock_path=args.sock_dir,
    )
    g.wait_function("tick", timeout=15)
    below_floor: Counter[str] = Counter()
    below_minimum: Counter[str] = Counter()
    for _ in range(args.tries):
        try:
            PERIOD(interval=0.0001)
        except Exception as exc:
            below_floor[type(exc).__name__] += 1
        else:
            below_floor["accepted"] += 1
        try:
            task = tick.call(exec_modifier=PERIOD(interval=0.01))
        except Exception as exc:
            below_minimum[type(exc).__name__] += 1
            if below_minimum[type(exc).__name__] == 1:
                say("MESSAGE", type(exc).__name__, str(exc).replace("\n", " "))
        else:
            below_minimum["accepted"] += 1
            task.cancel()
    say("RESULT below_floor", json.dumps(dict(below_floor)))
    say("RESULT below_minimum", json.dumps(dict(below_minimum)))
    g.stop()
    say("DONE")
