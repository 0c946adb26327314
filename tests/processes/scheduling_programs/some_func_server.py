"""Controller on localhost:8888 offering `some_func` (the callback the seed's snippets call)."""

import logging
import time

from daffi import Global
from daffi.decorators import callback

logging.basicConfig(level=logging.INFO)


@callback
def some_func():
    print(f"some_func ran at {time.time():.3f}", flush=True)


if __name__ == "__main__":
    Global(init_controller=True, host="localhost", port=8888).join()
