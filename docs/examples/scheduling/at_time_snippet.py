import time
import logging
from daffi import Global, PERIOD
from daffi.decorators import fetcher

logging.basicConfig(level=logging.INFO)


g = Global(host="localhost", port=8888)


@fetcher
def some_func() -> None:
    pass


# Wait my_callback function to be available on remote
g.wait_function("some_func")

now = time.time()  # seconds since the epoch (UTC), on any host

# 2 sec, 10 sec and 60 sec later
at_time = [now + 2, now + 10, now + 60]

task = some_func.call(exec_modifier=PERIOD(at_time=at_time))
