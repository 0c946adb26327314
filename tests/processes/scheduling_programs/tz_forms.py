"""Schedules one at_time run 1.5 s ahead in each form a user may write the time in, on a
host in the time zone TZ names, and says what became of each.

    python tz_forms.py SOCK_DIR

Prints ``SCHEDULED <form>`` or ``REFUSED <form> <reason>`` per form, waits 3 s (the runs
are due meanwhile), cancels whatever is left, and prints ``DONE``.
"""

import logging
import sys
import time
import warnings
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from daffi import PERIOD, Global
from daffi.decorators import fetcher
from daffi.exceptions import InitializationError

logging.basicConfig(level=logging.INFO)
warnings.simplefilter("ignore", DeprecationWarning)  # utcnow() on Python 3.12+

LEAD = timedelta(seconds=1.5)
FORMS = {
    "number": lambda: time.time() + LEAD.total_seconds(),
    "aware_utc": lambda: datetime.now(timezone.utc) + LEAD,
    "aware_tokyo": lambda: datetime.now(ZoneInfo("Asia/Tokyo")) + LEAD,
    "naive_local": lambda: datetime.now() + LEAD,
    # daffi 2's idiom: right on a UTC host only
    "utcnow_idiom": lambda: datetime.utcnow().timestamp() + LEAD.total_seconds(),
}


@fetcher
def tick(label: str):
    pass


if __name__ == "__main__":
    g = Global(process_name="tz-requester", unix_sock_path=sys.argv[1])
    g.wait_function("tick", timeout=10)
    tasks = []
    for form, make in FORMS.items():
        try:
            tasks.append(tick.call(form, exec_modifier=PERIOD(at_time=make())))
        except InitializationError as exc:
            print(f"REFUSED {form} {exc}", flush=True)
        else:
            print(f"SCHEDULED {form}", flush=True)
    time.sleep(3)
    for task in tasks:
        task.cancel()
    print("DONE", flush=True)
    g.stop()
