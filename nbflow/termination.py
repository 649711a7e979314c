"""Cancelling part of a run, and ending a run early on purpose.

- ``handle.cancel("task")``, ``handle.cancel(tag="region")`` from outside, and
  ``nf.context().cancel(...)`` from a task, cancel one task or every task with a tag (a
  *region*) while the run goes on. A task cancelled on its own ends ``cancelled`` and
  propagates like a skip (see ``scheduler.column_of``): its dependants under the default
  rule are ``skipped``, ``all_done`` and ``none_failed`` ones still run. The run's status
  is not affected: it is ``cancelled`` only when the whole run was.
- A join with ``cancel_rest=True`` cancels, as it fires, the upstream work that nothing
  else needs (:func:`nbflow.joins.rest_of`), the same way.
- ``nf.context().finish()`` ends the run now, ``succeeded`` (explicit termination): every
  other task still running or waiting is cancelled; the calling attempt runs to its end (its
  ``ctx.cancelled`` stays False, no retry follows it), and should it fail after all, the run
  ends ``failed``. Called from a fan-out element, the other elements of that task are
  cancelled too, and the task ends with the results of the elements that succeeded.

How a task is cancelled depends on where it is::

    pending, or queued     -> taken out of the scheduler's future (scheduler.withdraw)
    placed, not begun      -> taken off the placed queue, its slot given back
    waiting for its lock   -> taken out of the lock's line
    waiting for a signal   -> taken out of the waiting room (nbflow.waits)
    running                -> its runner (the asyncio task running it) is cancelled: the
                              CancelledError arrives inside the task, which ends cancelled
                              (its cleanup runs); then the runner is uncancelled and goes on
                              with its next task

The first three end at once; a running one at its next ``await`` (a sync task in a thread
goes on until it returns, its result discarded: ``nf.context().cancelled`` tells it to stop).
Requests may come from any thread (a sync task's, or a script's); they are applied on the
run's loop, and those made before the run began are applied as it begins. A task never
cancels itself: a task that wants to end returns (or raises); cancelling a region spares
the task that asked.

A task that asked to cancel or finish is never served from the cache or a resumed run: its
result alone cannot replay the request, so it runs again (see
:data:`nbflow.store.keys.CONTROLLED`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import events as ev
from . import scheduler as sch
from .errors import CancelError, closest
from .joins import partial, rest_of
from .lifecycle import RunStatus, TaskState
from .runtime import running_loop

if TYPE_CHECKING:
    from .engine import Engine

S = TaskState


def targets(plan: Any, task: Any = None, tag: str | None = None, caller: str | None = None
            ) -> list[str]:  # fmt: skip
    """The tasks a cancel request means, checked against ``plan`` (in definition order).

    ``task``: a task name or a task object; ``tag``: every task with that tag, but
    ``caller`` (the task asking, if any).

    Raises:
        CancelError: neither or both given, an unknown name or tag (with a close match), or
            ``caller`` naming itself.
    """
    if (task is None) == (tag is None):
        raise CancelError("cancel a task or a region: cancel('task') or cancel(tag='region')")
    if tag is not None:
        found = [n for n in plan.names if tag in plan.specs[n].tags and n != caller]
        if not found and not any(tag in plan.specs[n].tags for n in plan.names):
            tags = sorted({t for n in plan.names for t in plan.specs[n].tags})
            hint = closest(tag, tags)
            raise CancelError(
                f"cancel(tag={tag!r}): no task of flow {plan.flow_name!r} has that tag"
                + (f"; did you mean {hint!r}?" if hint else f"; tags are {tags}")
            )
        return found
    name = getattr(task, "name", task)
    if name not in plan.specs:
        hint = closest(str(name), plan.names)
        raise CancelError(
            f"cancel({name!r}): flow {plan.flow_name!r} has no task {name!r}"
            + (f"; did you mean {hint!r}?" if hint else "")
        )
    if name == caller:
        raise CancelError(
            f"task {name!r} cannot cancel itself: return from it (or raise) to end it; "
            "nf.context().finish() ends the whole run"
        )
    return [name]


def joins_of(plan: Any) -> frozenset[str]:
    """The joins of ``plan`` with ``cancel_rest`` and a partial trigger (kept with it)."""
    return plan.table(
        "cancel_rest",
        lambda: frozenset(
            n for n in plan.names if plan.specs[n].cancel_rest and partial(plan.specs[n].trigger)
        ),
    )


class Termination:
    """One run's cancellation scopes and explicit termination (see the module docstring).

    The engine makes one per run and calls :meth:`joined` when tasks are queued (for joins
    with ``cancel_rest``), :meth:`begun` when the run begins, and :meth:`settle` when a
    runner got a task back from a cancel this made. It keeps no reference to the engine
    (methods take it), so a finished run is freed without the garbage collector.
    """

    def __init__(self, plan: Any) -> None:
        #: Joins with cancel_rest: a partial trigger (a fan-out task's complete_when cancels
        #: its own elements, see nbflow.completion; one with both does both).
        self.joins: frozenset[str] = joins_of(plan)
        #: Running tasks being cancelled on their own -> the runner running each; the engine
        #: reads its truth value after every task, so it is empty unless a cancel is on.
        self.targeted: dict[str, asyncio.Task[Any]] = {}
        #: Why each task cancelled on its own was (the TaskCancelled event says it).
        self.reasons: dict[str, str] = {}
        self._early: list[tuple[list[str], str]] = []
        #: ``(task, element)`` of the attempt that called ``ctx.finish()``, once one did.
        self.finisher: tuple[str, int | None] | None = None

    # -- requests (any thread) ----------------------------------------------------------------

    def ask(
        self, engine: Engine, task: Any = None, tag: str | None = None,
        caller: str | None = None, reason: str = "",
    ) -> None:  # fmt: skip
        """Cancel ``task`` or the tasks with ``tag`` (see :func:`targets`); ``reason`` says
        who asked. Checked at once, in the caller's thread; applied on the run's loop.

        Raises:
            CancelError: see :func:`targets`.
        """
        names = targets(engine.plan, task, tag, caller)
        if caller is not None:
            _not_reusable(engine, caller)
        self.request(engine, names, reason)

    def request(self, engine: Engine, names: list[str], reason: str) -> None:
        """Cancel ``names`` (checked with :func:`targets`) on the run's loop, at once if this
        is it, else as soon as it can. A run that is over is left as it is."""
        if engine.state.status not in (RunStatus.PENDING, RunStatus.RUNNING):
            return
        loop = engine.loop
        if loop is not None and running_loop() is not loop:
            loop.call_soon_threadsafe(self.apply, engine, names, reason)
        else:
            self.apply(engine, names, reason)

    def finish(self, engine: Engine, caller: str, element: int | None = None) -> None:
        """End the run ``succeeded`` now, sparing the attempt of ``caller`` (its fan-out
        ``element``, if it is one) that asked (any thread)."""
        loop = engine.loop
        assert loop is not None, "finish() comes from a running task"
        _not_reusable(engine, caller)
        if running_loop() is loop:
            _finish(engine, caller, element)
        else:
            loop.call_soon_threadsafe(_finish, engine, caller, element)

    def begun(self, engine: Engine) -> None:
        """The run began: apply what was asked before."""
        early, self._early = self._early, []
        for names, reason in early:
            self.apply(engine, names, reason)

    # -- on the run's loop ----------------------------------------------------------------------

    def apply(self, engine: Engine, names: Iterable[str], reason: str) -> None:
        """Cancel each of ``names`` that has not finished, then place what became ready."""
        if engine._sched is None:  # the run has not begun: begun() applies it
            self._early.append((list(names), reason))
            return
        if engine._stopping:
            return
        for name in names:
            self._cancel(engine, name, reason)
        if engine._sched.ready and not engine._stopping:
            engine._dispatch()
        engine._maybe_finish()

    def joined(self, engine: Engine, queued: list[str]) -> None:
        """Tasks were just queued: a join with ``cancel_rest`` among them cancels the rest."""
        plan, sched = engine.plan, engine.sched
        for join in queued:
            if join not in self.joins:
                continue
            rest = rest_of(
                join, plan.upstream, plan.downstream,
                sched.outcome.__contains__, sched.decided.__contains__,
            )  # fmt: skip
            read = sch.gate_readers_of(plan, join)  # they ended; they do not vote
            voters = [u for u in plan.upstream[join] if u not in read]
            ok = sum(engine.state.tasks[u].state in (S.SUCCEEDED, S.CACHED) for u in voters)
            reason = (
                f"cancel_rest: {join!r} ({plan.specs[join].trigger}) fired with {ok} of "
                f"{len(voters)} upstream tasks succeeded"
            )
            for name in rest:
                self._cancel(engine, name, reason)

    def settle(self, name: str, runner: asyncio.Task[Any]) -> None:
        """``runner`` got ``name`` back: if this cancelled it, the runner's own cancellation
        is taken back, so it goes on with its next task."""
        if self.targeted.pop(name, None) is not None:
            runner.uncancel()

    def why(self, name: str) -> str:
        """Why ``name`` was cancelled on its own ("" when it was not)."""
        return self.reasons.get(name, "")

    def _cancel(self, engine: Engine, name: str, reason: str) -> None:
        sched = engine.sched
        if name in self.targeted or engine._stopping:
            return  # being cancelled already
        if name in sched.outcome:  # over; but a fan-out task that completed early
            runner = engine._inflight.get(name)  # (complete_when) may still run elements,
            if runner is not None:  # too late to count: those are cancelled, it stays
                self.targeted[name] = runner
                runner.cancel(reason)
            return
        self.reasons[name] = reason
        if name not in engine._inflight:  # pending or queued
            sch.withdraw(sched, name)
            if engine.locks is not None:  # queued again for a slot, holding its lock
                engine.locks.release(name)
        elif (runner := engine._inflight[name]) is not None:  # running: cancelled at its
            # next await (see the module docstring)
            self.targeted[name] = runner
            runner.cancel(reason)  # the task's CancelledError says why (its args)
            return
        elif engine.locks is not None and engine.locks.withdraw(name):
            del engine._inflight[name]  # it waited for its lock, holding nothing
        elif engine.waits is not None and engine.waits.withdraw(engine, name):
            pass  # it waited for its signals, holding nothing
        else:  # placed, not begun: it holds a slot (and maybe its lock)
            _unplace(engine, name)
        engine._emit(ev.TaskCancelled, name, 0, None, reason)
        engine._after_task(name, S.CANCELLED, dispatch=False)


def _not_reusable(engine: Engine, caller: str) -> None:
    """What ``caller`` returns cannot replay what it asked for here (serving it from the
    cache or a resumed run would let the run go on differently): it is not to be reused."""
    if engine.journal is not None:
        engine.journal.not_reusable(caller)


def _unplace(engine: Engine, name: str) -> None:
    """Take ``name``, placed but not begun, off the placed queue; give back its slot and lock."""
    for item in engine._placed:
        if item[0] == name:
            engine._placed.remove(item)
            break
    else:  # pragma: no cover - every placed task is in _placed or has a runner
        raise RuntimeError(f"task {name!r} is neither placed nor running")
    del engine._inflight[name]
    worker = item[1]
    if worker is not None:
        engine.slots.release(worker)
    if engine.locks is not None:
        engine.locks.release(name)


def _finish(engine: Engine, caller: str, element: int | None) -> None:
    """End the run ``succeeded``: every task is cancelled but the caller's attempt. When
    that is a fan-out element, the other elements of its task are other work: they are
    cancelled too, none starts after it, and the task ends with what succeeded (as with
    ``complete_when``... ``cancel_rest=True``)."""
    if engine._stopping or engine.state.status not in (RunStatus.PENDING, RunStatus.RUNNING):
        return
    engine.scope.finisher = (caller, element)
    who = f"task {caller!r}" + (f"[{element}]" if element is not None else "")
    engine._stop(
        RunStatus.SUCCEEDED,
        spare=engine._inflight.get(caller),
        reason=f"the run was finished by {who} (ctx.finish())",
    )
    if element is not None:
        asked = engine._asked_lanes.get(caller)
        for index, lane in list(engine._lanes.get(caller, {}).items()):
            if index != element:
                if asked is not None:  # (a cancel of the run's: see fanout.window)
                    asked.add(lane)
                lane.cancel()
