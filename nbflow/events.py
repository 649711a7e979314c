"""Typed events the engine emits; everything observable about a run is one of these.

Events are small records with ``__slots__``; treat them as read-only. They are not frozen
dataclasses on purpose: the engine makes three per task, and a frozen dataclass costs five
times as much to build (0.63 µs against 0.13 µs here).

``t`` is seconds on the run's clock (``loop.time()``: virtual under simulation), ``seq``
orders events totally within a run. ``element`` is the index of a fan-out element, or None
for the task as a whole.

Subscribers (``flow.subscribe(cb)``) receive each event as it happens; see :class:`EventBus`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("nbflow.events")


@dataclass(slots=True)
class Event:
    """Base of all events."""

    run_id: str
    seq: int
    t: float

    @property
    def kind(self) -> str:
        """The event's type name, e.g. ``"TaskStarted"``."""
        return type(self).__name__


@dataclass(slots=True)
class RunStarted(Event):
    """A run began; ``tasks`` lists the task names in definition order."""

    flow: str
    flow_version: str
    tasks: tuple[str, ...]
    variables: dict[str, Any]
    wall_start: float  # time.time() at t == 0, to turn run-clock times into datetimes
    fan_out: tuple[str, ...] = ()
    parent_run: str | None = None


@dataclass(slots=True)
class RunFinished(Event):
    """A run ended with ``status`` (succeeded, failed or cancelled)."""

    status: str
    error: str | None = None


@dataclass(slots=True)
class TaskQueued(Event):
    """A task's dependencies are met: it waits in the ready queue."""

    task: str


@dataclass(slots=True)
class TaskStarted(Event):
    """An attempt of a task (or of one fan-out element) started on ``worker``."""

    task: str
    attempt: int
    worker: str | None = None
    element: int | None = None
    #: set when a fan-out task starts: the number of elements it will run.
    size: int | None = None


@dataclass(slots=True)
class TaskRetrying(Event):
    """An attempt failed and another one follows after ``delay`` seconds."""

    task: str
    attempt: int  # the attempt that failed
    error: BaseException
    delay: float
    element: int | None = None
    #: where the attempt ran, when the executor knows better than ``TaskStarted.worker``.
    worker: str | None = None
    #: run-clock time the attempt really began there (remote executors: after queueing).
    began: float | None = None


@dataclass(slots=True)
class TaskSucceeded(Event):
    """An attempt succeeded; ``cached`` when the result came from the cache or a resume."""

    task: str
    attempt: int
    result: Any = None
    element: int | None = None
    cached: bool = False
    #: where the attempt ran, when the executor knows better than ``TaskStarted.worker``
    #: (a remote executor reports the Dask worker here).
    worker: str | None = None
    #: run-clock time the attempt really began there (remote executors: after queueing).
    began: float | None = None
    #: for a result served from the store: where from, in words ("resumed from run
    #: 4f2c1a9e", "cached from run 4f2c1a9e"); see ``Run.why`` for the whole story.
    reused: str | None = None


@dataclass(slots=True)
class TaskFailed(Event):
    """An attempt failed for good (no retry follows)."""

    task: str
    attempt: int
    error: BaseException
    traceback: str = ""
    element: int | None = None
    #: where the attempt ran, when the executor knows better than ``TaskStarted.worker``.
    worker: str | None = None
    #: run-clock time the attempt really began there (remote executors: after queueing).
    began: float | None = None


@dataclass(slots=True)
class TaskSkipped(Event):
    """A task will not run: ``state`` is ``skipped`` or ``upstream_failed``."""

    task: str
    state: str
    reason: str


@dataclass(slots=True)
class TaskCancelled(Event):
    """A task was cancelled (run cancelled or stopped, or the task on its own: see
    :mod:`nbflow.termination`) while pending, queued or running."""

    task: str
    attempt: int = 0
    element: int | None = None
    #: why, when known ("cancel_rest: 'quorum' fired...", "cancelled by task 'a'").
    reason: str = ""


@dataclass(slots=True)
class TaskLog(Event):
    """Lines an attempt printed or logged, in a batch (see :mod:`nbflow.logs`).

    ``lines`` holds ``(t, level, message, logger)`` per line: run-clock seconds, ``"stdout"``
    or ``"stderr"`` for prints, else the logging level's name (``"INFO"``...), the text
    (one line, no newline), and the logger's name (None for prints). ``dropped`` counts the
    attempt's lines left out so far (the cap: see ``nbflow.LogCapture``); ``latest``, while
    lines are being dropped, is the newest of them, for a live view only.
    """

    task: str
    attempt: int
    element: int | None
    lines: tuple[tuple[float, str, str, str | None], ...] = ()
    dropped: int = 0
    latest: str | None = None


@dataclass(slots=True)
class TaskProgress(Event):
    """How far a running attempt is (``nf.track``, ``ctx.progress``): ``done`` of ``total``
    (None: not known)."""

    task: str
    attempt: int
    element: int | None
    done: float
    total: float | None = None


@dataclass(slots=True)
class SignalReceived(Event):
    """A signal came into the run: ``handle.send``, ``nf.context().send``, the parent run
    (a subflow's), or the run resumed (its signals; see :mod:`nbflow.waits`)."""

    signal: str
    value: Any = None
    #: who sent it, in words ("handle.send", "task 'review'", "resumed from run 4f2c1a9e")
    sender: str = ""


@dataclass(slots=True)
class TaskWaiting(Event):
    """A task's dependencies are met and it waits for signals, holding no slot."""

    task: str
    signals: tuple[str, ...]
    #: what it waits for, as the dashboard says it: ``'approved'``, ``'a' or 'b'``
    description: str = ""


@dataclass(slots=True)
class TaskSignalled(Event):
    """The signals a waiting task waited for came (``signals``: those it received): it
    goes back to the ready queue."""

    task: str
    signals: tuple[str, ...] = ()


@dataclass(slots=True)
class IterationStarted(TaskStarted):
    """An attempt of iteration ``iteration`` (2, 3, ...) of a loop task started (the first
    iteration's attempts are plain :class:`TaskStarted` events)."""

    iteration: int = 0


@dataclass(slots=True)
class IterationEnded(Event):
    """An iteration of a loop task succeeded and another one follows."""

    task: str
    attempt: int
    iteration: int
    #: where the attempt ran, when the executor knows better than ``TaskStarted.worker``.
    worker: str | None = None
    #: run-clock time the attempt really began there (remote executors: after queueing).
    began: float | None = None


@dataclass(slots=True)
class SubflowStarted(Event):
    """A subflow task started a child run (``child_run``) of flow ``flow``."""

    task: str
    child_run: str
    flow: str
    #: the child run's state, live (not stored: the store has the child run itself)
    child: Any = None


@dataclass(slots=True)
class ElementKeyed(Event):
    """Element ``element`` of fan-out task ``task`` is named ``key`` (its ``key=``): sent
    once, before the element starts or is served from the cache."""

    task: str
    element: int
    key: str


Subscriber = Callable[[Event], Any]


class EventBus:
    """Delivers events to subscribers; a subscriber that raises is logged, never fatal."""

    __slots__ = ("_subscribers",)

    def __init__(self, subscribers: list[Subscriber] | None = None) -> None:
        self._subscribers: list[Subscriber] = list(subscribers or [])

    @property
    def subscribers(self) -> list[Subscriber]:
        """The live list of subscribers (changed in place only, so a reference stays current).

        The engine keeps a reference to skip publishing while nobody listens; use
        :meth:`subscribe` / :meth:`unsubscribe` to change it.
        """
        return self._subscribers

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Add ``callback``; returns a function that removes it again."""
        self._subscribers.append(callback)
        return lambda: self.unsubscribe(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        """Remove ``callback`` if present."""
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def publish(self, event: Event) -> None:
        """Call every subscriber with ``event``; exceptions are logged and swallowed.

        ``asyncio.CancelledError`` too: a subscriber is a plain call, so one it raises (it
        read a cancelled future) is its own error, never a cancel of the run's task.
        ``KeyboardInterrupt`` and ``SystemExit`` are not swallowed: the engine stops the run
        for them, and raises them once it has ended (see ``Engine._emit``).
        """
        # A copy: a subscriber may unsubscribe itself (or others) while being called.
        for callback in tuple(self._subscribers):
            try:
                callback(event)
            except (Exception, asyncio.CancelledError):
                log.exception(
                    "nbflow subscriber %r raised on %s; the run goes on", callback, event.kind
                )
