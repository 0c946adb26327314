"""Scheduling: durations now; triggers and the executor-side scheduler later."""

from __future__ import annotations

from daffi.scheduling._durations import parse_duration

__all__ = ["parse_duration"]
