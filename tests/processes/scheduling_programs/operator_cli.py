"""A third process: lists the executor's schedules and cancels one by uuid."""

import json
import sys

from daffi import Global, RemoteCallError

if __name__ == "__main__":
    g = Global(process_name="operator", unix_sock_path=sys.argv[1])
    g.wait_process("executor", timeout=10)
    listing = g.get_scheduled_tasks("executor")
    print("LISTING " + json.dumps(listing, default=str), flush=True)
    for uuid in sys.argv[2:]:
        try:
            print(f"CANCEL {uuid} {g.cancel_scheduled_task_by_uuid('executor', uuid)}", flush=True)
        except RemoteCallError as exc:  # an unknown uuid, as in daffi 2
            print(f"CANCEL {uuid} unknown: {exc}", flush=True)
    print(f"AFTER {json.dumps(g.get_scheduled_tasks('executor'), default=str)}", flush=True)
    g.stop()
