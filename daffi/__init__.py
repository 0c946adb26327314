"""daffi: call functions in other Python processes.

A process registers callbacks, another declares fetchers of the same name and calls them as
if they were local; one process runs the controller that routes everything.

Logging: records go to ``logging.getLogger("daffi...")`` and propagate; the ``daffi`` logger
has a ``NullHandler``, so a program that configured no logging prints nothing of daffi's
(``DAFFI_LOG_LEVEL`` or ``logging.basicConfig()`` shows them). See docs/configuration.md.
"""

import logging as _logging

from daffi.__about__ import __version__
from daffi._environment import apply_environment_log_level as _apply_environment_log_level
from daffi._global import Global, get_g
from daffi._mirror import NodeInfo
from daffi._results import AsyncResult, ScheduledTask, SchedulerTask
from daffi.exceptions import (
    AuthenticationError,
    DaffiError,
    GlobalContextError,
    InitializationError,
    ProtocolError,
    RemoteCallError,
    RemoteStoppedUnexpectedly,
    TimeoutError,
    UnableToFindCandidate,
)
from daffi.execution_modifiers import BG, BROADCAST, FG, PERIOD
from daffi.registry import Args, Callback, Fetcher, callback, fetcher

# A library's logger: without this, a warning in a program that configured no logging would
# print through logging.lastResort. DAFFI_LOG_LEVEL applies now (a bad value is reported by
# the first Global, with InitializationError), so that records logged before it show too.
_logging.getLogger("daffi").addHandler(_logging.NullHandler())
_apply_environment_log_level()

__all__ = [
    "BG",
    "BROADCAST",
    "FG",
    "PERIOD",
    "Args",
    "AsyncResult",
    "AuthenticationError",
    "Callback",
    "DaffiError",
    "Fetcher",
    "Global",
    "GlobalContextError",
    "InitializationError",
    "NodeInfo",
    "ProtocolError",
    "RemoteCallError",
    "RemoteStoppedUnexpectedly",
    "ScheduledTask",
    "SchedulerTask",
    "TimeoutError",
    "UnableToFindCandidate",
    "__version__",
    "callback",
    "fetcher",
    "get_g",
]
