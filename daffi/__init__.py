"""daffi: call functions in other Python processes.

A process registers callbacks, another declares fetchers of the same name and calls them as
if they were local; one process runs the controller that routes everything.
"""

from daffi.__about__ import __version__
from daffi._global import Global
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
]
