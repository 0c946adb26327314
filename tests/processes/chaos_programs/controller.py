"""A standalone controller for the chaos tests, on the backend and limits given.

Usage: controller.py BACKEND SOCK_DIR [--nofile N] [--frame-timeout SECONDS]

``--nofile`` lowers this process's RLIMIT_NOFILE (soft and hard) before daffi starts, so an
idle-connection flood runs it out of file descriptors (``accept`` fails with EMFILE).
``--frame-timeout`` is ``Global(frame_timeout=...)``, which ``python -m daffi controller``
does not expose. Warnings go to stderr. Prints "READY <address> nofile=<soft limit>" once
it listens, then serves until terminated.
"""

from __future__ import annotations

import logging
import resource

from _common import parser, say

if __name__ == "__main__":
    cli = parser(__doc__)
    cli.add_argument("--nofile", type=int, default=None)
    cli.add_argument("--frame-timeout", type=float, default=60.0)
    args = cli.parse_args()
    if args.nofile is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from daffi import Global

    g = Global(
        process_name="chaos-controller",
        init_controller=True,
        init_node=False,
        backend=args.backend,
        unix_sock_path=args.sock_dir,
        frame_timeout=args.frame_timeout,
    )
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    say("READY", g.address, f"nofile={soft}")
    try:
        g.join()
    except KeyboardInterrupt:
        g.stop()
