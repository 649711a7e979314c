"""The run-state reducer: one place where events become the state of a run.

:class:`RunState` applies events in order (``state.apply(event)``). :class:`~nbflow.run.Run`,
the timeline, the store and the dashboard all read this one state, so they always agree.
Attempt rows (one per task attempt, or per fan-out element attempt, labelled ``task[i]``, or
``task[key]`` with ``key=``) are appended as attempts start and closed as they end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import events as ev
from .errors import describe
from .lifecycle import RunStatus, TaskState


@dataclass(slots=True)
class AttemptRow:
    """One attempt of a task (or of a fan-out element): a row of the timeline."""

    task: str
    attempt: int
    status: str
    start: float
    end: float | None = None
    worker: str | None = None
    error: str | None = None
    element: int | None = None
    base: str = ""
    seq: int = 0


@dataclass(slots=True)
class TaskRecord:
    """Everything known about one task of one run."""

    name: str
    state: TaskState = TaskState.PENDING
    attempts: int = 0
    result: Any = None
    error: BaseException | None = None
    traceback: str = ""
    worker: str | None = None
    queued_t: float | None = None
    queued_seq: int | None = None
    started_t: float | None = None
    started_seq: int | None = None
    ended_t: float | None = None
    reason: str = ""
    size: int | None = None
    elements_done: int = 0
    elements_failed: int = 0
    #: Errors of failed fan-out elements by index (None until one fails: one dict less per
    #: task of a 100,000-task run).
    element_errors: dict[int, BaseException] | None = None
    #: Their tracebacks (formatted, nbflow's frames still in), for the Tasks view.
    element_tracebacks: dict[int, str] | None = None
    #: A fan-out task's elements' keys (``key=``) by index (None: no key).
    element_keys: dict[int, str] | None = None
    #: Results of a fan-out task's elements that succeeded, by index (None until one did).
    element_results: dict[int, Any] | None = None

    def element_label(self, index: int) -> str:
        """How an element is shown: ``task[key]``, or ``task[index]`` without ``key=``."""
        keys = self.element_keys
        return f"{self.name}[{keys.get(index, index) if keys is not None else index}]"

    @property
    def duration(self) -> float | None:
        """Seconds from first start to end (None until it has both)."""
        if self.started_t is None or self.ended_t is None:
            return None
        return self.ended_t - self.started_t


@dataclass(slots=True)
class RunState:
    """State of one run, built only by :meth:`apply`."""

    run_id: str = ""
    flow: str = ""
    flow_version: str = ""
    status: RunStatus = RunStatus.PENDING
    variables: dict[str, Any] = field(default_factory=dict)
    wall_start: float = 0.0
    started_t: float | None = None
    finished_t: float | None = None
    error: str | None = None
    #: What failed the run as a whole (a run middleware), as an exception; None otherwise.
    run_error: BaseException | None = None
    #: Why the store could not record the whole run (its own words); None: it did, or
    #: there is no store. Set once the store has answered, after the run ended.
    store_error: str | None = None
    parent_run: str | None = None
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    rows: list[AttemptRow] = field(default_factory=list)
    #: Attempts running now, by task name (a fan-out element's by ``(task, element)``).
    open_rows: dict[str | tuple[str, int], AttemptRow] = field(default_factory=dict)
    fan_out: frozenset[str] = frozenset()
    #: What each task printed or logged, by task: its :class:`~nbflow.events.TaskLog`
    #: batches in order (all attempts and elements; empty for a task that wrote nothing).
    logs: dict[str, list[ev.TaskLog]] = field(default_factory=dict)
    #: The latest progress of running attempts, keyed like :attr:`open_rows`:
    #: ``(attempt, done, total)`` (``nf.track``, ``ctx.progress``).
    progress: dict[str | tuple[str, int], tuple[int, float, float | None]] = field(
        default_factory=dict
    )
    #: Signals the run received: name -> the last value (see :mod:`nbflow.waits`).
    signals: dict[str, Any] = field(default_factory=dict)
    #: Tasks waiting for signals now -> what they wait for, in words.
    waiting: dict[str, str] = field(default_factory=dict)
    #: Tasks whose signals came -> (when they began to wait or None, when the signals came).
    signalled: dict[str, tuple[float | None, float]] = field(default_factory=dict)
    #: Loop tasks -> the iteration they are at (from 2: see :mod:`nbflow.iterations`).
    iterations: dict[str, int] = field(default_factory=dict)
    #: Subflow tasks -> the states of the child runs they started (one per attempt or
    #: iteration), live (see :mod:`nbflow.children`).
    children: dict[str, list[Any]] = field(default_factory=dict)
    last_seq: int = -1
    last_t: float = 0.0
    #: The moment a replay shows (run-clock seconds), set by :class:`nbflow.replay.Replayer`;
    #: None for a run's own state, whose "now" is the wall clock while it runs.
    shown_t: float | None = None

    def apply(self, event: ev.Event) -> None:
        """Fold one event into the state."""
        self.last_seq = event.seq
        self.last_t = event.t
        HANDLERS[type(event)](self, event)

    # -- derived views ---------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Number of tasks in each state."""
        result: dict[str, int] = {}
        for record in self.tasks.values():
            result[record.state.value] = result.get(record.state.value, 0) + 1
        return result

    @property
    def duration(self) -> float:
        """Seconds since the run started (until it finished)."""
        if self.started_t is None:
            return 0.0
        end = self.finished_t if self.finished_t is not None else self.last_t
        return max(0.0, end - self.started_t)

    # -- transitions -----------------------------------------------------------------------

    def _close(
        self,
        task: str,
        element: int | None,
        t: float,
        status: str,
        error: Any,
        worker: str | None = None,
        began: float | None = None,
    ) -> None:
        row = self.open_rows.pop(task if element is None else (task, element), None)
        if row is not None:
            row.end, row.status = t, status
            if worker is not None:  # a remote executor tells where the attempt really ran
                row.worker = worker
            if began is not None and row.start < began <= t:  # ...and when, after queueing
                row.start = began
            if error is not None:
                row.error = describe(error)


def _run_started(s: RunState, e: ev.RunStarted) -> None:
    s.run_id, s.flow, s.flow_version = e.run_id, e.flow, e.flow_version
    s.variables, s.wall_start, s.started_t = dict(e.variables), e.wall_start, e.t
    s.status, s.parent_run, s.fan_out = RunStatus.RUNNING, e.parent_run, frozenset(e.fan_out)
    s.tasks = {name: TaskRecord(name) for name in e.tasks}


def _run_finished(s: RunState, e: ev.RunFinished) -> None:
    s.status, s.finished_t, s.error = RunStatus(e.status), e.t, e.error


# Members read by the handlers below, bound once: an enum class attribute costs ~45 ns.
_QUEUED, _RUNNING = TaskState.QUEUED, TaskState.RUNNING
_SUCCEEDED, _CACHED = TaskState.SUCCEEDED, TaskState.CACHED


def _queued(s: RunState, e: ev.TaskQueued) -> None:
    record = s.tasks[e.task]
    record.state, record.queued_t, record.queued_seq = _QUEUED, e.t, e.seq


def _started(s: RunState, e: ev.TaskStarted, label: str | None = None) -> None:
    record = s.tasks[e.task]
    if e.element is None:
        record.state = _RUNNING
        record.attempts = e.attempt
        record.worker = e.worker
        if record.started_t is None:
            record.started_t, record.started_seq = e.t, e.seq
        if e.size is not None:
            record.size = e.size
        if s.fan_out and e.task in s.fan_out:
            return  # a fan-out task's rows are its elements' attempts
        row = AttemptRow(
            label or e.task, e.attempt, "running", e.t, None, e.worker, None, None, e.task, e.seq
        )
        s.rows.append(row)
        s.open_rows[e.task] = row
        return
    keys = record.element_keys  # (TaskRecord.element_label, inline: it runs per element)
    row = AttemptRow(
        f"{e.task}[{keys.get(e.element, e.element) if keys is not None else e.element}]",
        e.attempt,
        "running",
        e.t,
        None,
        e.worker,
        None,
        e.element,
        e.task,
        e.seq,
    )
    s.rows.append(row)
    s.open_rows[(e.task, e.element)] = row


def _retrying(s: RunState, e: ev.TaskRetrying) -> None:
    s._close(e.task, e.element, e.t, "failed", e.error, e.worker, e.began)
    if e.element is None:
        record = s.tasks[e.task]
        record.state, record.error = TaskState.RETRYING, e.error


def _succeeded(s: RunState, e: ev.TaskSucceeded) -> None:
    status = "cached" if e.cached else "succeeded"
    if e.element is not None:
        record = s.tasks[e.task]
        if e.cached and (e.task, e.element) not in s.open_rows:  # served from the cache
            s.rows.append(AttemptRow(record.element_label(e.element), e.attempt, status, e.t,
                                     e.t, None, None, e.element, e.task, e.seq))  # fmt: skip
        else:
            s._close(e.task, e.element, e.t, status, None, e.worker, e.began)
        record.elements_done += 1
        if record.element_results is None:
            record.element_results = {}
        record.element_results[e.element] = e.result
        return
    record = s.tasks[e.task]
    # A result from the cache or a resume ran no attempt: it gets one row of its own, a
    # fan-out task's too (its elements did not run either), so the timeline lists every task;
    # a fan-out task whose elements all came from the cache has their rows instead.
    if e.cached and e.task not in s.open_rows and not record.elements_done:
        row = AttemptRow(
            e.task, e.attempt, status, e.t, e.t, record.worker, None, None, e.task, e.seq
        )
        s.rows.append(row)
    elif s.fan_out and e.task in s.fan_out and not record.elements_done:
        _elementless_row(s, record, status, e.t, None)  # a fan-out over nothing
    s._close(e.task, None, e.t, status, None, e.worker, e.began)
    if e.worker is not None:
        record.worker = e.worker
    record.state = _CACHED if e.cached else _SUCCEEDED
    record.result, record.error, record.ended_t = e.result, None, e.t
    if e.reused is not None:
        record.reason = e.reused  # where the result came from (a skip's reason, otherwise)
    if record.started_t is None:
        record.started_t, record.started_seq = e.t, e.seq


def _failed(s: RunState, e: ev.TaskFailed) -> None:
    if e.element is not None:
        s._close(e.task, e.element, e.t, "failed", e.error, e.worker, e.began)
        record = s.tasks[e.task]
        record.elements_failed += 1
        if record.element_errors is None:
            record.element_errors = {}
        record.element_errors[e.element] = e.error
        if e.traceback:
            if record.element_tracebacks is None:
                record.element_tracebacks = {}
            record.element_tracebacks[e.element] = e.traceback
        return
    s._close(e.task, None, e.t, "failed", e.error, e.worker, e.began)
    record = s.tasks[e.task]
    if s.fan_out and e.task in s.fan_out and not (record.elements_done or record.elements_failed):
        _elementless_row(s, record, "failed", e.t, e.error)  # failed before any element
    record.state, record.error, record.traceback, record.ended_t = (
        TaskState.FAILED,
        e.error,
        e.traceback,
        e.t,
    )


def _elementless_row(
    s: RunState, record: TaskRecord, status: str, t: float, error: BaseException | None
) -> None:
    """The row of a fan-out task that ran no element (its rows are its elements' otherwise):
    from its start to ``t``, so the timeline lists every task that ran."""
    start = record.started_t if record.started_t is not None else t
    seq = record.started_seq if record.started_seq is not None else s.last_seq
    shown = describe(error) if error is not None else None
    s.rows.append(
        AttemptRow(record.name, 1, status, start, t, record.worker, shown, None, record.name, seq)
    )


def _skipped(s: RunState, e: ev.TaskSkipped) -> None:
    record = s.tasks[e.task]
    record.state, record.reason, record.ended_t = TaskState(e.state), e.reason, e.t


def _cancelled(s: RunState, e: ev.TaskCancelled) -> None:
    s._close(e.task, e.element, e.t, "cancelled", None)
    if e.element is None:
        record = s.tasks[e.task]
        record.state, record.ended_t = TaskState.CANCELLED, e.t
        if e.reason:
            record.reason = e.reason


def _log(s: RunState, e: ev.TaskLog) -> None:
    found = s.logs.get(e.task)
    if found is None:
        s.logs[e.task] = [e]
    else:
        found.append(e)


def _progress(s: RunState, e: ev.TaskProgress) -> None:
    s.progress[e.task if e.element is None else (e.task, e.element)] = (e.attempt, e.done, e.total)


def _signal(s: RunState, e: ev.SignalReceived) -> None:
    s.signals[e.signal] = e.value


def _waiting(s: RunState, e: ev.TaskWaiting) -> None:
    s.waiting[e.task] = e.description
    s.signalled[e.task] = (e.t, e.t)  # the second: when they come (see _signalled)
    s.tasks[e.task].reason = f"waiting for {e.description}"


def _signalled(s: RunState, e: ev.TaskSignalled) -> None:
    s.waiting.pop(e.task, None)
    began = s.signalled.get(e.task)
    s.signalled[e.task] = (began[0] if began is not None else None, e.t)
    if e.signals:
        s.tasks[e.task].reason = "received " + ", ".join(map(repr, e.signals))


def _iteration(s: RunState, e: ev.IterationStarted) -> None:
    s.iterations[e.task] = e.iteration
    _started(s, e, f"{e.task}#{e.iteration}")


def _iteration_ended(s: RunState, e: ev.IterationEnded) -> None:
    s._close(e.task, None, e.t, "succeeded", None, e.worker, e.began)


def _subflow(s: RunState, e: ev.SubflowStarted) -> None:
    s.children.setdefault(e.task, []).append(e.child)


def _keyed(s: RunState, e: ev.ElementKeyed) -> None:
    record = s.tasks[e.task]
    if record.element_keys is None:
        record.element_keys = {}
    record.element_keys[e.element] = e.key


#: The reducer's handler for each event type (the engine calls them directly on its hot path).
HANDLERS: dict[type, Callable[[RunState, Any], None]] = {
    ev.RunStarted: _run_started,
    ev.RunFinished: _run_finished,
    ev.TaskQueued: _queued,
    ev.TaskStarted: _started,
    ev.TaskRetrying: _retrying,
    ev.TaskSucceeded: _succeeded,
    ev.TaskFailed: _failed,
    ev.TaskSkipped: _skipped,
    ev.TaskCancelled: _cancelled,
    ev.TaskLog: _log,
    ev.TaskProgress: _progress,
    ev.SignalReceived: _signal,
    ev.TaskWaiting: _waiting,
    ev.TaskSignalled: _signalled,
    ev.IterationStarted: _iteration,
    ev.IterationEnded: _iteration_ended,
    ev.SubflowStarted: _subflow,
    ev.ElementKeyed: _keyed,
}
