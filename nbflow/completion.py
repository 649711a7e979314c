"""``complete_when=`` on a fan-out task: a partial join of its own elements, at run time.

``@flow.task(fan_out="items", complete_when="succeeded >= 3")``: the expression (parsed and
checked when the task is defined, see :mod:`nbflow.joins`) is evaluated with the safe
evaluator over ``done``, ``succeeded``, ``failed`` and ``total`` before any element starts
and again as each element ends. When it holds:

- no further element starts;
- the task succeeds with the results of the elements that succeeded so far, in input order
  (the failed ones are in ``run.element_errors``, as with ``allow_partial``): even
  ``failed >= 1`` stops the task early rather than failing it;
- with ``cancel_rest=True``, the elements in flight are cancelled at that moment (their
  rows end ``cancelled``), and the task ends with them;
- without it, the task's dependants start at that moment while the elements in flight run
  to their end; what they return comes too late to count (their rows still show it). The
  task stays in flight until they end, so the run, its lock and its slots wait for them;
  cancelling the task then (``ctx.cancel``, ``handle.cancel``) cancels those elements only.

When the task's elements stream in (:mod:`nbflow.streams`), ``total`` is ``None`` until
its sources have ended: ``done == total`` is false meanwhile, and an expression that
computes with it fails (say ``total is not None and ...``).

When it never holds, the task ends as any fan-out task does once every element ended. An
expression that fails (``succeeded / done`` before anything ended) fails the task at once,
cancelling the elements in flight, with a :class:`~nbflow.errors.ConditionError` that names
``complete_when``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import events as ev
from .errors import ConditionError
from .errors import format_exception as format_error
from .fanout import ElementOutcome
from .joins import parse_complete_when
from .lifecycle import TaskState

if TYPE_CHECKING:
    from .engine import Engine

S = TaskState


class Completion:
    """The ``complete_when`` of one fan-out task in one run: an :class:`~nbflow.fanout.Until`
    for its sliding window."""

    def __init__(self, engine: Engine, name: str, total: int | None) -> None:
        self.engine, self.name, self.total = engine, name, total
        plan = engine.plan
        spec = plan.specs[name]
        assert spec.complete_when is not None
        expression = spec.complete_when
        self.condition = plan.table(
            ("complete_when", name), lambda: parse_complete_when(name, expression)
        )
        self.cancel_rest = spec.cancel_rest
        self.done = self.succeeded = self.failed = 0
        self._ok: dict[int, Any] = {}
        #: the window stopped (the expression held, or failed); its results as of then
        self.stopped = False
        self.results: list[Any] = []
        #: the task completed while elements still ran (its runner must not complete it)
        self.settled = False
        self.error: ConditionError | None = None

    def sized(self, total: int) -> None:
        """The element count is known now (a streaming source ended)."""
        self.total = total

    def holds(self, outcome: ElementOutcome | None) -> bool:
        """Count ``outcome`` and evaluate the expression (see the module docstring)."""
        if outcome is not None:
            self.done += 1
            if outcome.ok:
                self.succeeded += 1
                self._ok[outcome.index] = outcome.value
            else:
                self.failed += 1
        if self.stopped:
            return False
        names = {"done": self.done, "succeeded": self.succeeded, "failed": self.failed,
                 "total": self.total}  # fmt: skip
        try:
            held = self.condition.evaluate_names(names)
        except ConditionError as error:  # it fails the task: nothing else should run for it
            self.error = ConditionError(
                self.name, error.expression, f"{error.reason} (with {names})", field="complete_when"
            )
            self.cancel_rest = True
            held = True
        if held:
            self.stopped = True
            self.results = [self._ok[i] for i in sorted(self._ok)]
        return held

    async def settle(self) -> None:
        """Complete the task now; its elements in flight go on (no ``cancel_rest``)."""
        state = await self.finish()
        self.settled = True
        self.engine._after_task(self.name, state)

    async def finish(self) -> TaskState:
        """Emit how the task ended (its window stopped); return that state."""
        engine, name = self.engine, self.name
        if self.error is not None:
            engine._emit(ev.TaskFailed, name, 1, self.error, format_error(self.error))
            return S.FAILED
        engine._emit(ev.TaskSucceeded, name, 1, await kept(engine, name, self.results))
        return S.SUCCEEDED


async def kept(engine: Engine, name: str, results: list[Any]) -> list[Any]:
    """A fan-out task's list of results as its downstream tasks and the store take it: fetched
    from a remote executor when the kernel reads it, snapshotted for the store."""
    if name in engine._fetch:  # a remote executor's element results, fetched in one go
        results = await engine.executor.amaterialize(results)
    if engine._keep is not None:
        pending = engine._keep(name, 1, results)
        if pending is not None:
            await pending
    return results
