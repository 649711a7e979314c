"""``nf.context()``: what a running task knows about itself.

Inside a task (async, or sync in its worker thread), ``nf.context()`` is the current
attempt's :class:`TaskContext`: the run's id, the task's name, the attempt, the fan-out
element, ``cancelled``, which a long synchronous loop can check to stop early (a thread
cannot be stopped from outside: see docs/concepts.md, "Cancelling"), the attempt's ``log``
and ``progress()`` (see :mod:`nbflow.logs`). ``cancel(...)`` cancels other tasks of the run
and ``finish()`` ends the run (:mod:`nbflow.termination`).

The engine sets one context variable per attempt, holding a plain tuple; the
:class:`TaskContext` object is made only when a task asks. Context variables follow asyncio
tasks and are copied into a sync task's thread, so concurrent tasks never see each other's.
"""

from __future__ import annotations

import contextvars
import logging
from typing import TYPE_CHECKING, Any

from .errors import NbflowError
from .signals import SignalError

if TYPE_CHECKING:
    from .engine import Engine

#: ``(engine, task, attempt, element, worker, iteration)`` of the attempt running in this
#: context (``iteration``: a loop task's, 1, 2...; 0 for any other task).
current: contextvars.ContextVar[tuple[Any, ...] | None] = contextvars.ContextVar(
    "nbflow_task", default=None
)


class TaskContext:
    """The running attempt of a task, as ``nf.context()`` gives it.

    Attributes:
        run_id: the run's id.
        flow: the flow's name.
        task: the task's name.
        attempt: 1 for the first attempt, 2 for the first retry...
        element: the fan-out element's index (None: not a fan-out element); ``key`` its
            ``key=``.
        worker: the worker (pool) or slot the attempt runs on.
        iteration: a loop task's iteration (1, 2...; see ``flow.loop``), whose attempts
            count from 1 again; 0 for a task that is not a loop.
    """

    __slots__ = ("_engine", "attempt", "element", "flow", "iteration", "run_id", "task", "worker")

    def __init__(
        self,
        engine: Engine,
        task: str,
        attempt: int,
        element: int | None,
        worker: str | None,
        iteration: int = 0,
    ) -> None:
        self._engine = engine
        self.run_id = engine.run_id
        self.flow = engine.plan.flow_name
        self.task = task
        self.attempt = attempt
        self.element = element
        self.worker = worker
        self.iteration = iteration

    @property
    def key(self) -> str | None:
        """The fan-out element's ``key=`` (None: not a fan-out element, or no key)."""
        if self.element is None:
            return None
        keys = self._engine.state.tasks[self.task].element_keys
        return keys.get(self.element) if keys is not None else None

    @property
    def log(self) -> logging.Logger:
        """The task's logger (``nbflow.task.<task>``): what it logs goes to this attempt's
        log (``run.logs()``, the dashboard), and to the handlers of the user's ``logging``
        configuration as any logger's records do. Its level is the flow's
        ``LogCapture.level`` (INFO by default)."""
        from .capture import task_logger

        output = getattr(self._engine, "output", None)
        cap = getattr(output, "cap", None)
        return task_logger(self.task, cap.level if cap is not None else logging.INFO)

    def progress(self, done: float, total: float | None = None) -> None:
        """Report that this attempt has done ``done`` of ``total`` (None: unknown): a
        progress bar on the task's node and row in the dashboard (updates are sent a few
        times a second at most, so calling this often is cheap).

        Raises:
            ValueError: ``done`` or ``total`` is negative or not a number.
        """
        from .progress import report

        here = (self._engine, self.task, self.attempt, self.element, self.worker, self.iteration)
        report(here, done, total)

    @property
    def cancelled(self) -> bool:
        """Whether this attempt should stop: the run was stopped or cancelled, the attempt
        timed out, or the task was cancelled. A sync task's loop can check it and return;
        an async task is cancelled by asyncio itself (``CancelledError`` at its next await).
        """
        return self._engine.attempt_over(self.task, self.element, self.attempt)

    def cancel(self, task: Any = None, *, tag: str | None = None) -> None:
        """Cancel another task of this run, or every task with ``tag`` but this one (a
        region); the run goes on. Each ends ``cancelled`` and propagates like a skip (see
        :mod:`nbflow.termination`). Tasks that already finished are left as they are.

        Raises:
            CancelError: no task or tag of that name (with a close match), neither or both
                given, or this task named itself (return or raise to end it instead).
        """
        engine = self._in_kernel("cancel()")
        who = f"task {self.task!r}" + (f"[{self.element}]" if self.element is not None else "")
        engine.scope.ask(engine, task, tag, self.task, f"cancelled by {who} (ctx.cancel)")

    def send(self, signal: str, value: Any = True) -> None:
        """Send ``signal`` (with ``value``) to this run: the tasks waiting for it start (see
        :mod:`nbflow.waits`). From a sync task's thread too.

        Raises:
            SignalError: nothing in the run waits for ``signal`` (with a close match).
        """
        engine = self._in_kernel(f"send({signal!r})")
        who = f"task {self.task!r}" + (f"[{self.element}]" if self.element is not None else "")
        if engine.waits is None:
            raise SignalError(
                f"send({signal!r}) from {who}: no task of flow {self.flow!r} waits for a signal"
            )
        engine.waits.send(engine, signal, value, who)

    def finish(self) -> None:
        """End the run now, ``succeeded`` (explicit termination): every other task still
        running or waiting is cancelled; this attempt runs to its end and its result counts.
        """
        engine = self._in_kernel("finish()")
        engine.scope.finish(engine, self.task, self.element)

    def _in_kernel(self, what: str) -> Any:
        """The run's engine, for what only the kernel can do: on a Dask worker
        (:mod:`nbflow.remote_logs`) the run's tasks, signals and end are out of reach."""
        if getattr(self._engine, "on_worker", False):
            raise NbflowError(
                f"nf.context().{what} from task {self.task!r}: the task runs on a Dask worker, "
                "and only tasks that run in the kernel can send signals, cancel tasks or "
                "finish the run; return a value and let a task in the kernel act on it "
                "(see docs/dask.md)"
            )
        return self._engine

    def __repr__(self) -> str:
        element = f"[{self.element}]" if self.element is not None else ""
        if self.iteration > 1:
            element += f"#{self.iteration}"
        return (
            f"<TaskContext {self.flow!r} {self.task}{element} attempt={self.attempt} "
            f"run={self.run_id[:8]}>"
        )


def context() -> TaskContext:
    """The running task's :class:`TaskContext`.

    Raises:
        NbflowError: called outside a task (the message says where it can be called).
    """
    found = current.get()
    if found is None:
        raise NbflowError(
            "nf.context() is only available inside a running task: call it from the body of "
            "a @flow.task function (async, or sync in its thread), not at module level or in "
            "a notebook cell"
        )
    return TaskContext(*found)
