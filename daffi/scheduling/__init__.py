"""Scheduling: durations, triggers and the executor-side scheduler behind ``PERIOD``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daffi.scheduling._cron import Cron
    from daffi.scheduling._durations import parse_duration
    from daffi.scheduling._scheduler import (
        Clock,
        LoopClock,
        ScheduleEntry,
        Scheduler,
        SystemClock,
    )
    from daffi.scheduling._triggers import AtTimes, Interval, Trigger

# Loaded on first use: a process that never schedules (or parses a duration) skips them.
_WHERE = {
    "parse_duration": "_durations",
    "Clock": "_scheduler",
    "LoopClock": "_scheduler",
    "ScheduleEntry": "_scheduler",
    "Scheduler": "_scheduler",
    "SystemClock": "_scheduler",
    "AtTimes": "_triggers",
    "Cron": "_cron",
    "Interval": "_triggers",
    "Trigger": "_triggers",
}

__all__ = [
    "AtTimes",
    "Clock",
    "Cron",
    "Interval",
    "LoopClock",
    "ScheduleEntry",
    "Scheduler",
    "SystemClock",
    "Trigger",
    "parse_duration",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
