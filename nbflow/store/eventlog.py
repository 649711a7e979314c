"""A run's events as rows, and back: the store's event log.

Every event is one row: ``(seq, t, task, attempt, element, worker, ...)``, the fields every
task event has first (missing ones None), then those of its kind (:data:`LAYOUTS`), as plain
data (an exception as its type's name and its message; a result is never in the log: the
store keeps it apart, see :mod:`nbflow.store.results`). The events of one kind that one commit
writes are one row of ``event_log``: the pickle (protocol 5) of the list of their rows, made
in C for the three events of every task (queued, started, succeeded, :data:`HOT`), one
``attrgetter`` and one ``pickle.dumps`` a kind. Pickle, not JSON, because this is the bulk of
what a run writes, and JSON spends most of its time spelling floats: five times slower, and
it would be GIL time taken from the run.

:func:`decode` gives the events back as :mod:`nbflow.events` objects, so what is folded from
the log (attempts, a timeline, a replay) is folded by the same reducer as a live run.
"""

from __future__ import annotations

import json
import operator
import pickle
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
    ev.TaskCancelled: (),
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
    fields = _fields(cls)
    wanted = (*COMMON, *LAYOUTS[cls])
    present = [name for name in wanted if name in fields]
    if present != list(wanted[: len(present)]) or {"error", "variables"} & set(present):
        return None
    return operator.attrgetter(*present)


def _fields(cls: type[ev.Event]) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)}


_FAST = {cls: _fast_getter(cls) for cls in LAYOUTS}


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


def encode(by_kind: Mapping[type, list[ev.Event]]) -> list[tuple[str, int, bytes]]:
    """``(kind, first seq, rows)`` of one run's events, one per kind (``by_kind``: the
    events of each kind, in order)."""
    segments = []
    for cls, group in by_kind.items():
        getter = _FAST.get(cls)
        rows = list(map(getter, group)) if getter is not None else list(map(_row, group))
        segments.append((cls.__name__, group[0].seq, pickle.dumps(rows, protocol=5)))
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
    rows: list[tuple[Any, ...]] = pickle.loads(data)
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
