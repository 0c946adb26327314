import time
import logging
from daffi import Global
from daffi.decorators import callback

logging.basicConfig(level=logging.INFO)



@callback
def long_running_task1() -> None:
    print("Start long running task 1")
    for i in range(1, 3):
        print(f"Processing item {i}...")
        time.sleep(1)
    print("Task 1 complete.")


@callback
def long_running_task2() -> None:
    print("Start long running task 2")
    for i in range(100, 103):
        print(f"Processing item {i}...")
        time.sleep(1)
    print("Task 2 complete.")


if __name__ == '__main__':
    Global(init_controller=True, host="localhost", port=8888).join()
