"""A daffi 2 style pipeline stage: ``cbN`` calls ``cb(N+1)`` on the next worker through the
Global it reaches with ``get_g()``; the last stage returns "My secret value".

Usage: pipeline.py ADDRESS... NAME STAGE MODE   (STAGE: 1, 2 or 3; MODE: see _d2.serve)

Each stage offers its callback in four styles: ``fg_cbN`` and ``bg_cbN`` (``def``, FG and
BG + ``.get()``), ``async_fg_cbN`` and ``async_bg_cbN`` (``async def``, the async twins). Every
stage also answers with its own process name through ``get_g()``, ``callback.g`` and a
``Callback`` subclass's ``self.g``.
"""

from __future__ import annotations

import sys

from _d2 import address, serve

from daffi import BG, FG, Callback, Global, callback, get_g

SECRET = "My secret value"


def fg_cb1():
    return get_g().call.fg_cb2() & FG


def fg_cb2():
    return get_g().call.fg_cb3() & FG


def fg_cb3():
    return SECRET


def bg_cb1():
    return (get_g().call.bg_cb2() & BG(timeout=10)).get()


def bg_cb2():
    return (get_g().call.bg_cb3() & BG(timeout=10)).get()


def bg_cb3():
    return SECRET


async def async_fg_cb1():
    return await get_g().call.async_fg_cb2().fg_async()


async def async_fg_cb2():
    return await get_g().call.async_fg_cb3().fg_async()


async def async_fg_cb3():
    return SECRET


async def async_bg_cb1():
    fut = get_g().call.async_bg_cb2() & BG(timeout=10)
    return await fut.get_async()


async def async_bg_cb2():
    fut = get_g().call.async_bg_cb3() & BG(timeout=10)
    return await fut.get_async()


async def async_bg_cb3():
    return SECRET


STAGES = {
    "1": [fg_cb1, bg_cb1, async_fg_cb1, async_bg_cb1],
    "2": [fg_cb2, bg_cb2, async_fg_cb2, async_bg_cb2],
    "3": [fg_cb3, bg_cb3, async_fg_cb3, async_bg_cb3],
}


@callback
def name_by_get_g():
    return get_g().process_name


@callback
def name_by_callback_g():
    return name_by_callback_g.g.process_name


@callback
async def name_by_async_callback_g():
    return name_by_async_callback_g.g.process_name


class Identity(Callback):
    def name_by_self_g(self):
        return self.g.process_name


if __name__ == "__main__":
    options, (name, stage, mode) = address(sys.argv[1:])
    for function in STAGES[stage]:
        callback(function)
    Identity()
    serve(mode, lambda: Global(process_name=name, **options))
