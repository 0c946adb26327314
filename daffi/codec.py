"""How values travel: hooks for your own types, and the codec's errors.

Arguments and results are encoded with msgspec (msgpack); a type msgspec does not know is
unstructured by a cattrs converter first, and an annotated parameter (or a fetcher's return
annotation) is structured back from what arrived by the same converter. Teach it a type of
your own with a pair of hooks::

    import daffi.codec

    daffi.codec.register_unstructure_hook(Money, lambda m: f"{m.amount} {m.currency}")
    daffi.codec.register_structure_hook(Money, lambda text, _: Money.parse(text))

Register hooks before the callbacks and fetchers that use the type are declared (at import
time, next to the type): a callback's structuring is prepared when it is registered. Both
processes of a call need the hooks (the sender unstructures, the receiver structures).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from daffi._codec import (
    PayloadCodec,
    PayloadDecodeError,
    PayloadEncodeError,
    PayloadStructureError,
    default_codec,
)
from daffi._structure import ArgumentTypeError

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "ArgumentTypeError",
    "PayloadCodec",
    "PayloadDecodeError",
    "PayloadEncodeError",
    "PayloadStructureError",
    "get_converter",
    "register_structure_hook",
    "register_unstructure_hook",
]

T = TypeVar("T")


def get_converter() -> cattrs.Converter:
    """The cattrs converter every part of this process shares (the default codec's).

    For what :func:`register_structure_hook` and :func:`register_unstructure_hook` do not
    cover, e.g. ``register_structure_hook_factory`` or cattrs strategies.
    """
    return default_codec.converter


def register_unstructure_hook(cls: type[T], hook: Callable[[T], Any]) -> None:
    """Send values of ``cls`` as what ``hook(value)`` returns (anything msgspec encodes)."""
    default_codec.converter.register_unstructure_hook(cls, hook)


def register_structure_hook(cls: type[T], hook: Callable[[Any, type[T]], T]) -> None:
    """Build a ``cls`` from what arrived (``hook(value, cls)``) for parameters and fetcher
    returns annotated with ``cls``; raise ``TypeError`` or ``ValueError`` if it does not fit.
    """
    default_codec.converter.register_structure_hook(cls, hook)
