"""A run's events as rows, and back: the store's event log.

Every event is one row: ``(seq, t, task, attempt, element, worker, ...)``, the fields every
task event has first (missing ones None), then those of its kind (:data:`LAYOUTS`), as plain
data (an exception as its type's name and its message; a result is never in the log: the
store keeps it apart, see :mod:`nbflow.store.results`). The events of one kind that one commit
writes are one row of ``event_log``: a pickle (protocol 5) of their rows. For the three
events of every task (queued, started, succeeded, :data:`HOT`) the engine's journal keeps
the rows' fields one after the other as they happen (:func:`hot_route`: one ``attrgetter``
and one ``deque.extend``, in C), and the pickle holds ``(width, fields)``. Pickle, not
JSON, because this is the bulk of what a run writes, and JSON spends most of its time
spelling floats: five times slower, and it would be GIL time taken from the run.

:func:`decode` gives the events back as :mod:`nbflow.events` objects, so what is folded from
the log (attempts, a timeline, a replay) is folded by the same reducer as a live run.
"""

from __future__ import annotations

import json
import operator
import pickle
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from .. import events as ev

COMMON = ("seq", "t", "task", "attempt", "element", "worker")

#: The fields of each kind after :data:`COMMON`, in row order.
LAYOUTS: dict[type[ev.Event], tuple[str, ...]] = {
    ev.RunStarted: (
        "flow",
        "flow_version",
        "tasks",
        "variables",
        "wall_start",
        "fan_out",
        "parent_run",
    ),
    ev.RunFinished: ("status", "error"),
    ev.TaskQueued: (),
    ev.TaskStarted: ("size",),
    ev.TaskRetrying: ("error", "delay", "began"),
    ev.TaskSucceeded: ("cached", "began"),
    ev.TaskFailed: ("error", "traceback", "began"),
    ev.TaskSkipped: ("state", "reason"),
    ev.TaskCancelled: ("reason",),
    ev.TaskLog: ("lines", "dropped", "latest"),
    ev.TaskProgress: ("done", "total"),
}
KINDS: dict[str, type[ev.Event]] = {cls.__name__: cls for cls in LAYOUTS}
#: The kinds every task has (queued, started, succeeded): each gets a queue of its own in
#: a run's journal, and its rows are made in C.
HOT: tuple[type[ev.Event], ...] = (ev.TaskQueued, ev.TaskStarted, ev.TaskSucceeded)


def _fast_getter(cls: type[ev.Event]) -> Callable[[Any], tuple[Any, ...]] | None:
    """An ``attrgetter`` of the whole row, for kinds whose row is plain attributes in order:
    every common field up to the last one the kind has, and no exception to turn to text."""
    present = _present(cls)
    if present != list((*COMMON, *LAYOUTS[cls])[: len(present)]):
        return None
    if {"error", "variables"} & set(present):
        return None
    return operator.attrgetter(*present)


def _present(cls: type[ev.Event]) -> list[str]:
    """The fields of ``cls``'s row that its events have (TaskQueued has no attempt)."""
    fields = _fields(cls)
    return [name for name in (*COMMON, *LAYOUTS[cls]) if name in fields]


def _fields(cls: type[ev.Event]) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)}


_FAST = {cls: _fast_getter(cls) for cls in LAYOUTS}
#: The row of each hot kind's event, made in C.
ROWS: dict[type[ev.Event], Callable[[Any], tuple[Any, ...]]] = {
    cls: getter for cls in HOT if (getter := _FAST[cls]) is not None
}
assert len(ROWS) == len(HOT), "a hot kind needs a fast row getter"
#: The number of fields in each hot kind's row.
WIDTHS = {cls: len(_present(cls)) for cls in HOT}


def hot_route(
    queue: deque[Any], row: Callable[[Any], tuple[Any, ...]]
) -> Callable[[ev.Event], None]:
    """Where the engine puts a hot event: its row's fields, one after the other, at the end
    of ``queue`` (:func:`take_rows` gives the rows back).

    Nothing that the garbage collector tracks is left behind: not the event, not a tuple.
    What waits for the writer (thousands of items in a busy run) would otherwise count
    towards every collection, survive into the older generations and make full
    collections of the whole heap come twice as often (measured on a 10,000-task run:
    +2.8 µs a task of collector time, the largest part of the store's cost).
    """
    extend = queue.extend

    def put(event: ev.Event) -> None:
        extend(row(event))

    return put


def _row(event: ev.Event) -> list[Any]:
    """The row of one event, field by field (the kinds without a fast getter)."""
    row: list[Any] = [event.seq, event.t]
    for name in (*COMMON[2:], *LAYOUTS[type(event)]):
        value = getattr(event, name, None)
        if isinstance(value, BaseException):
            value = (type(value).__name__, _message(value))
        elif name == "variables":
            value = _jsonable(value)
        row.append(value)
    while row and row[-1] is None:
        row.pop()
    return row


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # an exception whose __str__ raises
        return f"<{type(error).__name__} whose message cannot be shown>"


def _jsonable(value: Any) -> Any:
    """Plain data for the log: a mapping of what JSON can hold, others by their repr."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return (
            {str(k): repr(v) for k, v in value.items()} if isinstance(value, dict) else repr(value)
        )


def encode(by_kind: Mapping[type, list[Any]]) -> list[tuple[str, int, bytes]]:
    """``(kind, first seq, data)`` of one run's events, one per kind. ``by_kind`` holds the
    events of each kind in order, or for a hot kind (:func:`hot_route`) the fields of their
    rows one after the other: those are stored as they are, ``(width, fields)``."""
    segments = []
    for cls, group in by_kind.items():
        if type(group[0]) is not cls:  # a hot kind's fields: seq comes first
            data = pickle.dumps((WIDTHS[cls], group), protocol=5)
            segments.append((cls.__name__, group[0], data))
            continue
        getter = _FAST.get(cls)
        rows = list(map(getter, group)) if getter is not None else list(map(_row, group))
        first: int = group[0].seq  # type: ignore[attr-defined]
        segments.append((cls.__name__, first, pickle.dumps(rows, protocol=5)))
    return segments


class StoredError(Exception):
    """An exception read back from the event log: its type's name and message."""


_ERROR_TYPES: dict[str, type[StoredError]] = {}


def stored_error(type_name: str, message: str) -> StoredError:
    """An exception whose ``type(e).__name__`` is ``type_name`` and ``str(e)`` ``message``."""
    cls = _ERROR_TYPES.get(type_name)
    if cls is None:
        cls = _ERROR_TYPES[type_name] = type(type_name, (StoredError,), {})
    return cls(message)


def decode(run_id: str, kind: str, data: bytes) -> list[ev.Event]:
    """The events of one ``event_log`` row."""
    cls = KINDS.get(kind)
    if cls is None:
        return []  # written by a newer nbflow: not shown
    stored = pickle.loads(data)
    if type(stored) is tuple:  # (width, fields): a hot kind's rows, flat
        width, fields = stored
        rows: Any = zip(*[iter(fields)] * width, strict=True)
    else:
        rows = stored
    fields = _fields(cls)
    names = (*COMMON, *LAYOUTS[cls])
    found = []
    for row in rows:
        values = dict(zip(names, row, strict=False))
        kwargs = {k: v for k, v in values.items() if k in fields and k not in ("seq", "t")}
        error = kwargs.get("error")
        if isinstance(error, list | tuple):
            kwargs["error"] = stored_error(*error)
        for name in ("tasks", "fan_out"):
            if isinstance(kwargs.get(name), list):
                kwargs[name] = tuple(kwargs[name])
        found.append(cls(run_id, values["seq"], values["t"], **kwargs))
    return found
