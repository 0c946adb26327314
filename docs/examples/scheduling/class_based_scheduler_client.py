import time
import logging
from daffi import Global, PERIOD
from daffi.registry import Fetcher

logging.basicConfig(level=logging.INFO)


class SchedulerClient(Fetcher):
    # The default behavior of this fetcher is to execute each of its methods every 5 seconds.
    exec_modifier = PERIOD(interval="5s")

    def long_running_task1(self) -> None:
        pass

    def long_running_task2(self) -> None:
        pass


if __name__ == '__main__':
    g = Global(host="localhost", port=8888)
    scheduler_client = SchedulerClient()

    task_ident = scheduler_client.long_running_task1()
    time.sleep(30)

    # Stop the current recurring task.
    task_ident.cancel()

    now = time.time()  # seconds since the epoch (UTC), on any host
    at_time = [now + 10, now + 30]

    # Execute the `long_running_task2` function twice on the remote.
    # The first execution will occur 10 seconds from now, and the second will occur 30 seconds from now.
    task_ident = scheduler_client.long_running_task2.call(exec_modifier=PERIOD(at_time=at_time))

    g.stop()
