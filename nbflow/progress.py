"""Progress inside a task: ``nf.track(iterable)`` and ``nf.context().progress(done, total)``.

Both tell the running attempt's :class:`~nbflow.logs.RunOutput` how far it is. Reporting is
a couple of attribute writes, from any thread; the run turns the latest value into a
:class:`~nbflow.events.TaskProgress` event at most every ``LogCapture.interval`` seconds, on
the event loop (so ``nf.track`` over a million items sends a few events a second, not a
million). The dashboard draws it as a bar on the task's node and in its row of the task
table; a replay shows it as it was.

Outside a task (a task's function called by itself, in a unit test) both do nothing but
iterate, so a task's code needs no ``if``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, Generic, TypeVar

from .context import current

T = TypeVar("T")


def _checked(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"progress: {name} must be a number >= 0, not {value!r}")
    if isinstance(value, float) and math.isinf(value):
        raise ValueError(f"progress: {name} must be finite, not {value!r}")
    return value


def report(key: tuple[Any, ...], done: float, total: float | None) -> None:
    """Tell the attempt ``key`` (a tuple as in :data:`nbflow.context.current`) that it has
    done ``done`` of ``total``.

    Raises:
        ValueError: ``done`` or ``total`` is negative, infinite or not a number.
    """
    _checked(done, "done")
    if total is not None:
        _checked(total, "total")
    output = getattr(key[0], "output", None)
    if output is not None:
        output.progress(key, done, total)


class Tracked(Generic[T]):
    """``nf.track(iterable)``: iterate (``for`` or ``async for``), reporting progress."""

    __slots__ = ("_items", "total")

    def __init__(self, items: Iterable[T] | AsyncIterable[T], total: float | None) -> None:
        self._items = items
        self.total = total

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("nf.track(...) of an iterable without a length has no len()")
        return int(self.total)

    def __iter__(self) -> Iterator[T]:
        found = current.get()
        output = getattr(found[0], "output", None) if found is not None else None
        items: Iterable[T] = self._items  # type: ignore[assignment]
        if output is None:  # outside a task: just iterate
            yield from items
            return
        progress, total = output.progress, self.total
        progress(found, 0, total)
        for done, item in enumerate(items, 1):
            yield item
            progress(found, done, total)

    async def __aiter__(self) -> AsyncIterator[T]:
        found = current.get()
        output = getattr(found[0], "output", None) if found is not None else None
        items: AsyncIterable[T] = self._items  # type: ignore[assignment]
        done = 0
        if output is not None:
            output.progress(found, 0, self.total)
        async for item in items:
            yield item
            done += 1
            if output is not None:
                output.progress(found, done, self.total)

    def __repr__(self) -> str:
        return f"<nf.track of {type(self._items).__name__} total={self.total}>"


def track(iterable: Iterable[T] | AsyncIterable[T], total: float | None = None) -> Tracked[T]:
    """Iterate over ``iterable`` as is, reporting the running task's progress as you go::

        for row in nf.track(rows):          # or: async for page in nf.track(pages(), total=40)
            ...

    The task's node and row in the dashboard get a bar of items done out of ``total``
    (default: ``len(iterable)`` when it has one; without a total, a count). An item counts
    as done when the loop asks for the next one. Outside a task it only iterates.

    Raises:
        ValueError: ``total`` is negative, infinite or not a number.
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    else:
        _checked(total, "total")
    return Tracked(iterable, total)
