"""A run's events as the store keeps them, and back: the store's event log.

The engine hands the run's journal each event as what it was made from, its class, ``t`` and
``args`` (the event is ``cls(run_id, seq, t, *args)``; its ``seq`` is its place in the log:
every event of a run goes there, in order), one after the other at the end of the run's log
(one ``list.extend``). Nothing waits for the writer but these items: the class (never among
an event's arguments, so it marks where the next event begins), the time, and the
arguments, strings and numbers the event holds anyway; no tuple per event, nothing the
garbage collector tracks, so thousands of events waiting for the writer cost neither
collections nor memory of their own. What one commit writes of a run's log is a pickle of
the items (:func:`encode`), in the ``events`` of the run's ``records`` row of that commit.
Pickle, not JSON: this is the bulk of what a run writes, and JSON spends most of its time
spelling floats (five times slower, and GIL time taken from the run). An event's fields are
stored by position, so a field added to an event class goes at its end, with a default.

What an event carries is stored as it is when it pickles (a signal's value comes back
whole to the run that resumes it), else as its ``repr``; an exception as its type's name and
its message (:func:`stored_error` gives it back); a run's variables as plain data (what is
not, as its ``repr``: they are in the ``runs`` row too); a subflow's live child run not at
all (the store has that run apart). A task's result rides along only
when it is a plain value (:data:`LOGGED`: None, a bool, an int or a float); the store keeps
results apart (:mod:`nbflow.store.results`), the engine leaves the others out of the row.

:func:`decode` gives the events back as :mod:`nbflow.events` objects, so what is folded from
the log (attempts, a timeline, a replay) is folded by the same reducer as a live run. An
event of a kind this nbflow does not know (a newer one wrote it) is left out.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from collections.abc import Iterable, Iterator
from typing import Any

from .. import events as ev
from ..state import RunState

COMMON = ("seq", "t", "task", "attempt", "element", "worker")

#: The fields of each kind after :data:`COMMON` that :meth:`SQLiteStore.events` shows as its
#: payload (``events()`` rows), in order.
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
    ev.TaskLog: ("lines", "dropped", "latest", "iteration"),
    ev.TaskProgress: ("done", "total", "iteration"),
    ev.SignalReceived: ("signal", "value", "sender"),
    ev.TaskWaiting: ("signals", "description"),
    ev.TaskSignalled: ("signals",),
    ev.IterationStarted: ("size", "iteration"),
    ev.IterationEnded: ("iteration", "began"),
    ev.SubflowStarted: ("child_run", "flow"),
    ev.ElementKeyed: ("key",),
}
KINDS: dict[str, type[ev.Event]] = {cls.__name__: cls for cls in LAYOUTS}
#: The types of result a ``TaskSucceeded`` row may carry (the engine leaves others out).
LOGGED: frozenset[type] = frozenset({type(None), bool, int, float})
_EXACT = frozenset({*LOGGED, str, bytes, complex})  # plain data, as it is
_SHOWN = 1000  # characters of an object's repr kept in the log


class StoredError(Exception):
    """An exception read back from the event log: its type's name and message."""


_ERROR_TYPES: dict[str, type[StoredError]] = {}


def stored_error(type_name: str, message: str) -> StoredError:
    """An exception whose ``type(e).__name__`` is ``type_name`` and ``str(e)`` ``message``."""
    cls = _ERROR_TYPES.get(type_name)
    if cls is None:
        cls = _ERROR_TYPES[type_name] = type(type_name, (StoredError,), {})
    return cls(message)


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # an exception whose __str__ raises
        return f"<{type(error).__name__} whose message cannot be shown>"


def _shown(value: Any) -> str:
    try:
        return repr(value)[:_SHOWN]
    except Exception:
        return f"<{type(value).__name__}>"


class _Pickler(pickle.Pickler):
    # Called for what pickle has no builtin way for (not for str, int, tuple, dict...).
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BaseException):
            return stored_error, (type(obj).__name__, _message(obj))
        if isinstance(obj, RunState):  # a subflow's child run, live: the store has it apart
            return type(None), ()
        return NotImplemented


def encode(log: list[Any]) -> bytes:
    """The ``events`` of one ``records`` row: the items of a run's log (class, ``t``,
    arguments, class, ``t``, arguments...)."""
    if log and log[0] is ev.RunStarted:  # its variables: plain data (see the docstring)
        log[5] = _plain(log[5])  # (the caller's list, taken from the run's log)
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, protocol=5).dump(log)
    except Exception:  # something that does not pickle (a lock sent as a signal's value)
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=5).dump(list(map(_pickled_or_shown, log)))
    return buffer.getvalue()


def _pickled_or_shown(value: Any) -> Any:
    try:
        _Pickler(io.BytesIO(), protocol=5).dump(value)
    except Exception:
        return _shown(value)
    return value


def _plain(value: Any) -> Any:
    """``value`` with whatever is not plain data replaced by its ``repr``."""
    kind = type(value)
    if kind in _EXACT:
        return value
    if kind in (tuple, list, set, frozenset):
        return kind(map(_plain, value))
    if kind is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    return _shown(value)


class _Unknown(ev.Event):
    """An event of a kind this nbflow does not know (a newer one wrote it): left out."""


_EVENTS = {c for c in vars(ev).values() if isinstance(c, type) and issubclass(c, ev.Event)}
_EVENTS.add(_Unknown)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == ev.__name__:  # an event's class, maybe one of a newer nbflow
            found = getattr(ev, name, None)
            known = isinstance(found, type) and issubclass(found, ev.Event)
            return found if known else _Unknown
        return super().find_class(module, name)


def rows_of(data: bytes) -> Iterator[tuple[type[ev.Event], float, tuple[Any, ...]]]:
    """The events of one ``records`` row as ``(class, t, args)``."""
    items = _Unpickler(io.BytesIO(data)).load()
    # An event's class begins each event (no event holds an event's class: a signal's value
    # could be a class, never one of these).
    starts = [i for i, item in enumerate(items) if isinstance(item, type) and item in _EVENTS]
    for start, end in zip(starts, [*starts[1:], len(items)], strict=True):
        yield items[start], items[start + 1], tuple(items[start + 2 : end])


def decode(run_id: str, parts: Iterable[bytes]) -> list[ev.Event]:
    """The events of a run's ``records`` rows (their ``events``), in order; one of a kind
    this nbflow does not know (a newer one wrote it) is left out."""
    found = []
    rows = (row for data in parts for row in rows_of(data))
    for seq, (cls, t, args) in enumerate(rows):
        if cls is _Unknown:
            continue
        try:
            found.append(cls(run_id, seq, t, *args))
        except TypeError:  # a newer nbflow's event, with fields this one does not have
            found.append(cls(run_id, seq, t, *args[: len(dataclasses.fields(cls)) - 3]))
    return found
