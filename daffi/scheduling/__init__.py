"""Scheduling: durations, triggers and the executor-side scheduler behind ``PERIOD``."""

from __future__ import annotations

from daffi.scheduling._durations import parse_duration
from daffi.scheduling._scheduler import (
    Clock,
    LoopClock,
    ScheduleEntry,
    Scheduler,
    SystemClock,
)
from daffi.scheduling._triggers import AtTimes, Interval, Trigger

__all__ = [
    "AtTimes",
    "Clock",
    "Interval",
    "LoopClock",
    "ScheduleEntry",
    "Scheduler",
    "SystemClock",
    "Trigger",
    "parse_duration",
]
