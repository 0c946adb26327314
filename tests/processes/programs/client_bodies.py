"""Fetchers with bodies, aliases, and callbacks that must not be reachable remotely.

Usage: client_bodies.py TRANSPORT...
Prints "RESULT <name> <value>" for each call, then "DONE".
"""

from __future__ import annotations

import sys

from _cli import transport_options

from daffi import Args, Global, UnableToFindCandidate
from daffi.decorators import alias, fetcher
from daffi.registry import Fetcher


@fetcher
def add(x):
    # The body runs here; the tuple it returns is sent as positional arguments.
    return x, x * 10


@fetcher
def describe(a):
    return Args(a, b=a + 1, label="body")


@fetcher
def scale(x):
    # Anything else is sent as the one argument.
    return x + 1


@alias("shout")
@fetcher
def loud(text): ...


@fetcher
@alias("whisper")
def quiet(text): ...


@fetcher
@alias("power_of")
def power(base, exp): ...


@fetcher
def local_helper(): ...


@fetcher
def _private_helper(): ...


@fetcher
def make_loud(text):
    """The callback is registered only under its alias "shout"."""


class Helpers(Fetcher):
    def local_helper(self): ...

    @alias("power_of")
    def two_to_the(self, exp):
        return Args(2, exp=exp)


def expect_missing(label, call):
    try:
        value = call()
    except UnableToFindCandidate as exc:
        print(f"RESULT {label} UnableToFindCandidate: {exc}")
    except Exception as exc:
        print(f"RESULT {label} unexpected {type(exc).__name__}: {exc}")
    else:
        print(f"RESULT {label} returned {value!r}")


if __name__ == "__main__":
    options, _ = transport_options(sys.argv[1:])
    g = Global(process_name="client-bodies", **options)
    g.wait_function("scale", timeout=10)
    helpers = Helpers()
    print("RESULT tuple_body", add(7))
    print("RESULT args_body", describe(1))
    print("RESULT value_body", scale(4))
    print("RESULT alias_above", loud("hi"))
    print("RESULT alias_below", quiet("HI"))
    print("RESULT alias_class_method", power(3, 2))
    print("RESULT alias_fetcher_class", helpers.two_to_the(5))
    expect_missing("local_function", local_helper)
    expect_missing("local_method", helpers.local_helper)
    expect_missing("private", _private_helper)
    expect_missing("original_name", lambda: make_loud("hi"))
    g.stop()
    print("DONE")
