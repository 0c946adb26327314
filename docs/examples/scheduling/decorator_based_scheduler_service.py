import time
import logging
from daffi import Global, PERIOD
from daffi.decorators import fetcher

logging.basicConfig(level=logging.INFO)


@fetcher(exec_modifier=PERIOD(interval="5s"))
def long_running_task1() -> None:
    """Execute this method every 5 second on remote"""
    pass


@fetcher
def long_running_task2() -> None:
    """The default execution modifier is set here, but it can be changed at runtime."""
    pass


if __name__ == '__main__':
    g = Global(host="localhost", port=8888)

    task_ident = long_running_task1()
    time.sleep(30)

    # Stop the current recurring task.
    task_ident.cancel()

    now = time.time()  # seconds since the epoch (UTC), on any host
    at_time = [now + 10, now + 30]

    # Execute the `long_running_task2` function twice on the remote.
    # The first execution will occur 10 seconds from now, and the second will occur 30 seconds from now.
    task_ident = long_running_task2.call(exec_modifier=PERIOD(at_time=at_time))

    g.stop()
