"""A node (and the controller) that runs the schedules schedules_client.py makes.

Run:    python schedules_worker.py [ADDRESS]
        python schedules_client.py [ADDRESS]
"""

import sys

from daffi import Global, callback

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "tcp://localhost:8888"


@callback
def report():
    pass


if __name__ == "__main__":
    g = Global(process_name="worker", init_controller=True, address=ADDRESS)
    print(f"worker ready on {g.address}", flush=True)
    try:
        g.join()
    except KeyboardInterrupt:
        g.stop()
