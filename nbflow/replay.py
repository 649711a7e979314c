"""Replay: a finished run shown as it stood at any moment, rebuilt from its events.

``nf.replay(run_or_run_id)`` gives a dashboard (:class:`~nbflow.widgets.replay.Replay`) with
a play button, a speed and a time slider. What it shows at a moment *t* (run-clock seconds)
is the run's state folded from its events up to *t* by the run's own reducer
(:class:`Replayer`), so a replay agrees with the live dashboard by construction.

Where the events come from (:func:`recorded_events`):

- a run recorded in a store (the default): its event log, exactly as recorded, task
  logs and progress included; a run id (or the first characters of one) finds the run
  in ``store`` (default: the default store);
- a :class:`~nbflow.run.Run` of a flow without a store (``store=None``, a simulated run):
  events rebuilt from its final state (:func:`events_from_state`): every attempt's start
  and end, each state change, signal and log line at its time; of a task's progress, only
  the last value it reported; no task's result (a replay shows states).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import events as ev
from .errors import NbflowError
from .lifecycle import RunStatus
from .state import RunState

if TYPE_CHECKING:
    from .run import Run
    from .widgets.replay import Replay


class Replayer:
    """The state of a run at any moment of it, folded from its ``events`` (pure: no widgets).

    :meth:`seek` moves forward by applying the events in between, and back by folding again
    from the start. The state it returns is always the same object (a dashboard's
    ``Run`` reads it): its ``shown_t`` is the moment shown.

    Raises:
        ValueError: ``events`` does not start with the run's ``RunStarted``.
    """

    def __init__(self, events: Iterable[ev.Event]) -> None:
        self.events = sorted(events, key=lambda e: e.seq)
        if not self.events or type(self.events[0]) is not ev.RunStarted:
            raise ValueError("a replay needs a run's events, starting with RunStarted")
        self.times = [e.t for e in self.events]
        # Events are in seq order, and so in time order but for the odd late stamp: keep
        # the slider monotonic.
        for i in range(1, len(self.times)):
            self.times[i] = max(self.times[i], self.times[i - 1])
        self.start = self.times[0]
        self.end = self.times[-1]
        self.state = RunState()
        self._applied = 0
        self.seek(self.end)

    @property
    def duration(self) -> float:
        """Seconds from the run's start to its end."""
        return self.end - self.start

    @property
    def run_id(self) -> str:
        """The replayed run's id."""
        return self.events[0].run_id

    def seek(self, t: float) -> RunState:
        """The state at run-clock time ``t`` (clamped to the run): every event up to it."""
        t = min(max(t, self.start), self.end)
        wanted = bisect.bisect_right(self.times, t)
        if wanted < self._applied:  # back: fold again from the start, into the same object
            self.state.__init__()  # type: ignore[misc]
            self._applied = 0
        state = self.state
        for event in self.events[self._applied : wanted]:
            state.apply(event)
        self._applied = wanted
        state.shown_t = t
        return state

    def moments(self) -> list[float]:
        """The distinct times at which something happened (for stepping)."""
        return sorted(set(self.times))

    def __repr__(self) -> str:
        return (
            f"<Replayer run={self.run_id[:8]} events={len(self.events)} "
            f"duration={self.duration:.3f}s>"
        )


def recorded_events(source: Any, store: Any = "default") -> list[ev.Event]:
    """The events of a finished run: a :class:`~nbflow.run.Run`, or a run id (or the first
    characters of one) in ``store`` (see the module).

    Raises:
        NbflowError: the run is still going, or no (or more than one) run of the store has
            that id.
        TypeError: ``source`` is neither a Run nor a run id.
    """
    from .run import Run

    if isinstance(source, Run):
        if not source.done:
            raise NbflowError(
                f"run {source.run_id[:8]} of flow {source.flow!r} is still going: replay it "
                "when it has finished (watch it live with nf.Dashboard(handle))"
            )
        durable = getattr(source, "_durable", None)
        if durable is not None and source.recorded:
            return durable.recorder.store.event_objects(source.run_id)
        return events_from_state(source.state)
    if isinstance(source, str):
        from .store import resolve_store

        found = resolve_store(store)
        if found is None:
            raise NbflowError(
                f"replay({source!r}): no store to look the run up in (store=None); pass "
                "the Run itself, or store= the path of the store that recorded it"
            )
        return found.event_objects(_run_id(found, source))
    raise TypeError(f"replay needs a Run or a run id, not {type(source).__name__}: {source!r}")


def _run_id(store: Any, wanted: str) -> str:
    if store.run(wanted) is not None:
        return wanted
    matches = [row["run_id"] for row in store.runs() if row["run_id"].startswith(wanted)]
    if len(matches) == 1:
        return str(matches[0])
    if not matches:
        raise NbflowError(f"no run {wanted!r} in store {store.location!r}")
    raise NbflowError(
        f"{len(matches)} runs in store {store.location!r} start with {wanted!r}; give more "
        "of the id"
    )


def events_from_state(state: RunState) -> list[ev.Event]:
    """Events that fold into ``state`` again, at the times it recorded (see the module).

    Each attempt's chain of events (start, then end) is listed in causal order and the list
    sorted by time, stably, so events at the same moment keep that order. A loop's rows
    come back as its iterations (``IterationStarted``, ``IterationEnded``), a fan-out's
    elements with their keys, a cancelled task with its reason, a subflow task's child
    runs, the signals and the waits for them.
    """
    if state.started_t is None:
        raise NbflowError(f"run {state.run_id[:8]} never started: nothing to replay")
    found: list[tuple[float, type[ev.Event], tuple[Any, ...]]] = []

    def add(t: float | None, cls: type[ev.Event], *args: Any) -> None:
        found.append((t if t is not None else state.last_t, cls, args))

    tasks, fan_out, rows = state.tasks, state.fan_out, state.rows
    add(state.started_t, ev.RunStarted, state.flow, state.flow_version, tuple(tasks),
        dict(state.variables), state.wall_start, tuple(n for n in tasks if n in fan_out),
        state.parent_run)  # fmt: skip
    # Signals as they came and the waits for them, listed first: at the same moment they
    # come before what they cause (a task woken and started, a choice's loser skipped).
    for e in state.signal_events:
        add(e.t, type(e), *(getattr(e, f.name) for f in dataclasses.fields(e)[3:]))
    # When each element first shows (its key is sent before: rows are labelled by it).
    first: dict[tuple[str, int | None], float | None] = {}
    for row in rows:
        first.setdefault((row.base, row.element), row.end if row.status == "cached" else row.start)
    # Fan-out tasks that ran no element: their row is their own start and end (below).
    elementless = {r.base for r in rows if r.element is None and r.base in fan_out} - {
        r.base for r in rows if r.status == "cached"
    }
    for name, record in tasks.items():
        if record.queued_t is not None:
            add(record.queued_t, ev.TaskQueued, name)
        began = record.started_t is not None and (record.size is not None or name in elementless)
        if name in fan_out and began:
            add(record.started_t, ev.TaskStarted, name, 1, record.worker, None, record.size)
        for index, element_key in (record.element_keys or {}).items():
            add(first.get((name, index), record.started_t), ev.ElementKeyed, name, index,
                element_key)  # fmt: skip
    last = {(row.base, row.element): row for row in rows}
    # A subflow task's child runs, one per attempt or iteration: each row's, in order.
    children = {name: list(runs) for name, runs in state.children.items()}
    cancelled_rows: set[str] = set()
    for row in rows:
        if row.base in elementless:  # its own end makes it again (its start is above)
            record = tasks[row.base]
            if row.status == "succeeded":
                add(row.end, ev.TaskSucceeded, row.base, 1)
            else:
                add(row.end, ev.TaskFailed, row.base, 1, record.error, record.traceback)
            continue
        if row.status == "cached":  # reused: where from is the task's reason
            reused = tasks[row.base].reason or None if row.element is None else None
            add(row.end, ev.TaskSucceeded, row.base, row.attempt, None, row.element, True,
                None, None, reused)  # fmt: skip
            continue
        if row.iteration:
            add(row.start, ev.IterationStarted, row.base, row.attempt, row.worker, row.element,
                None, row.iteration)  # fmt: skip
        else:
            add(row.start, ev.TaskStarted, row.base, row.attempt, row.worker, row.element)
        child = children[row.base].pop(0) if children.get(row.base) else None
        if child is not None:
            add(row.start, ev.SubflowStarted, row.base, child.run_id, child.flow, child)
        if row.end is None:
            continue
        if row.status == "succeeded" and last[row.base, row.element] is not row:
            # A loop's iteration that another one followed (a task's success is its last row).
            add(row.end, ev.IterationEnded, row.base, row.attempt, row.iteration or 1)
        elif row.status == "succeeded":
            add(row.end, ev.TaskSucceeded, row.base, row.attempt, None, row.element)
        elif row.status == "cancelled":
            reason = tasks[row.base].reason if row.element is None else ""
            add(row.end, ev.TaskCancelled, row.base, row.attempt, row.element, reason)
            if row.element is None:
                cancelled_rows.add(row.base)
        elif last[row.base, row.element] is not row:  # a later attempt followed: a retry
            add(row.end, ev.TaskRetrying, row.base, row.attempt, _error(row.error), 0.0,
                row.element)  # fmt: skip
        else:
            record = tasks[row.base]
            if row.element is None:
                error, trace = record.error, record.traceback
            else:  # a failed element: its own error and traceback, as the run kept them
                error = (record.element_errors or {}).get(row.element)
                trace = (record.element_tracebacks or {}).get(row.element, "")
            error = error or _error(row.error)
            add(row.end, ev.TaskFailed, row.base, row.attempt, error, trace, row.element)
    rows_of = {row.base for row in rows}
    ended = {n for n in fan_out if tasks[n].size is not None and n not in elementless}
    for name, record in tasks.items():
        value = record.state.value
        if value in ("skipped", "upstream_failed"):
            add(record.ended_t, ev.TaskSkipped, name, value, record.reason)
        elif value == "cancelled" and name not in cancelled_rows:
            add(record.ended_t, ev.TaskCancelled, name, 0, None, record.reason)
        elif name in ended and value in ("succeeded", "failed"):
            if value == "succeeded":
                add(record.ended_t, ev.TaskSucceeded, name, 1)
            else:
                add(record.ended_t, ev.TaskFailed, name, 1, record.error, record.traceback)
        elif value == "failed" and name not in rows_of:  # failed before any attempt (a gate)
            add(record.ended_t, ev.TaskFailed, name, 0, record.error, record.traceback)
    for batches in state.logs.values():
        for e in batches:
            add(e.t, ev.TaskLog, e.task, e.attempt, e.element, e.lines, e.dropped, e.latest,
                e.iteration)  # fmt: skip
    for key, (attempt, done, total) in state.progress.items():
        task, element = (key, None) if isinstance(key, str) else key
        final = last.get((task, element))
        add(final.end if final is not None else None, ev.TaskProgress, task, attempt, element,
            done, total, final.iteration if final is not None else 0)  # fmt: skip
    if state.status not in (RunStatus.PENDING, RunStatus.RUNNING):
        add(state.finished_t, ev.RunFinished, state.status.value, state.error)
    found.sort(key=lambda item: item[0])  # stable: causal order at equal times
    return [cls(state.run_id, seq, t, *args) for seq, (t, cls, args) in enumerate(found)]


def _error(text: str | None) -> BaseException:
    from .store.eventlog import stored_error

    name, _, message = (text or "Error").partition(": ")
    return stored_error(name, message)


def replay(
    source: Run | str,
    store: Any = "default",
    *,
    speed: float | None = None,
    at: float | None = None,
    **options: Any,
) -> Replay:
    """A dashboard that plays ``source``, a finished run, again (see the module).

    Args:
        source: a :class:`~nbflow.run.Run`, or the id of a run in ``store`` (its first
            characters are enough when they name one run).
        store: where to look a run id up (a path, a store object; default: the default
            store, ``NBFLOW_STORE`` or ``.nbflow/nbflow.db``).
        speed: run seconds per second of playing; default: the whole run plays in about
            ten seconds (a 0.5 s run at 0.05 run seconds a second).
        at: the moment shown first, in run seconds from its start (default: the end).
        **options: for :class:`~nbflow.widgets.Dashboard` (``prefer``, ``max_nodes``...).

    Returns:
        a :class:`~nbflow.widgets.replay.Replay` widget (it shows itself as a cell's value;
        ``.display()`` shows it from inside a cell).

    Raises:
        NbflowError: the run is still going or is not in the store.
        TypeError: ``source`` is neither a Run nor a run id.
    """
    from .widgets.replay import Replay

    plan = getattr(source, "_plan", None)
    return Replay(recorded_events(source, store), plan=plan, speed=speed, at=at, **options)
