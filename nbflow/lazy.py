"""Values that are read when first needed: a result kept in a store, until something uses it.

A leaf module (like ``errors``): the engine and the run read values through it without
knowing where they come from. A lazy value's class sets ``nbflow_lazy = True`` and has a
``load()`` method that returns the value (reading it the first time, then keeping it); its
``cheap`` attribute, when true, says reading it is quick (a small value in the database,
not a large file), so showing it may read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any


def is_lazy(value: Any) -> bool:
    """Whether ``value`` stands for a value still to be read (``load()`` gives it)."""
    return getattr(type(value), "nbflow_lazy", False) is True


def value_of(value: Any) -> Any:
    """``value``, or what it stands for when it is lazy (read now, in this thread)."""
    return value.load() if is_lazy(value) else value


async def loaded(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every lazy value read, off the event loop (a large stored result takes
    a while to read and check). The dict is returned unchanged when none is lazy."""
    lazy = [key for key, value in values.items() if is_lazy(value)]
    if not lazy:
        return values
    found = dict(values)
    for key in lazy:
        found[key] = await asyncio.to_thread(values[key].load)
    return found


class LazyValues(Mapping[str, Any]):
    """A read-only mapping whose lazy values are read when looked up (then kept).

    Keys are known without reading anything; ``to_dict()`` reads everything.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw

    def __getitem__(self, key: str) -> Any:
        return value_of(self._raw[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def to_dict(self) -> dict[str, Any]:
        """Every value, read."""
        return {key: value_of(value) for key, value in self._raw.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.to_dict() == dict(other)

    __hash__ = None  # type: ignore[assignment]  # a mutable view, like dict

    def __repr__(self) -> str:
        # What printing `run.results` in a cell shows: the values, read if they are small
        # (a cached or resumed result is a value like any other to the person looking); a
        # large one not yet read shows as what it is (task, run, size, format) rather than
        # be read whole just to be printed.
        shown = ", ".join(f"{k!r}: {_shown(v)}" for k, v in self._raw.items())
        return f"{{{shown}}}"


def _shown(value: Any) -> str:
    """``repr`` of the value a lazy value stands for when it is read already or cheap to
    read; else (or if reading it fails: a damaged row, a locked store) the lazy value's."""
    if is_lazy(value) and (getattr(value, "loaded", False) or getattr(value, "cheap", False)):
        try:
            return repr(value.load())
        except Exception:  # printing shows what it is; reading it says why it failed
            pass
    return repr(value)
