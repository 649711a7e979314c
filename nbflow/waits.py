"""Tasks waiting for signals, at run time: one run's mailbox and its waiting room.

A task with ``wait_for=`` (see :mod:`nbflow.signals`) is decided as any task is (its
dependencies, its ``when=``); then, instead of taking its lock and a slot, it *waits*: it
holds nothing, shows as waiting (``TaskWaiting``), and counts as in flight, so the run goes
on while it waits. When its signals have come (``TaskSignalled``) it goes back to the ready
queue and starts as any ready task, at that very moment if a slot is free. Its ``timeout=``
bounds the wait too: a signal that does not come in time fails it
(:class:`SignalTimeoutError`).

**The mailbox.** Every signal sent to a run is an event (``SignalReceived``, in the store's
log) and is kept: the run's last value of each signal, in the order they came.

- *Persistent* (the default): a task takes a signal that came before it began waiting.
- *Transient* (``transient=True``): only a signal that comes while the task waits counts;
  one sent before is not kept for it.
- *Deferred choice* (``nf.any_of("a", "b")``): the first signal of the choice to come
  decides it for the run (a transient choice: the first that comes while one of its tasks
  waits). A task waiting for the whole ``any_of`` starts with that signal's value (the
  others ``None``); a task waiting for one branch (``any_of(...).on("a")``) starts if its
  signal won, and is ``skipped`` at that moment if another did (its dependants then follow
  the trigger rules, as after any skip).

**Resume.** A resumed run (``resume=``) starts with the signals the run it resumes received
(``SignalReceived`` events, sender ``"resumed from run …"``), before any task waits: a
persistent task takes them at once. A task that had received its signals there (transient
or not) receives the same values again instead of waiting: an approval given is not asked
for again. A transient task that never got its signal there waits for a new one.

**Subflows.** A child run starts with its parent's signals (persistent), and a signal sent
to the parent while a child runs goes on to the child too; ``handle.send`` knows the
signals of its flow's subflows. A task's ``nf.context().send()`` goes to its own run: a
child run's task signals the child run (and its own children), not its parent.

**Simulation.** On the simulated clock nobody can send a signal from outside: when the run
has nothing left to do but wait (no timer, no task running), the waiting tasks fail with a
:class:`~nbflow.errors.SimulationError` naming what they wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import events as ev
from . import scheduler as sch
from .attempts import gate_verdict, upstream_results
from .errors import SimulationError, TaskTimeoutError, closest
from .errors import format_exception as format_error
from .gates import awaits
from .lazy import is_lazy
from .lifecycle import RunStatus, TaskState
from .runtime import running_loop
from .signals import SignalError, WaitFor, signals_of
from .subflows import Subflow, planned_subflows

if TYPE_CHECKING:
    from .engine import Engine

S = TaskState


class SignalTimeoutError(TaskTimeoutError):
    """A task waited longer than its ``timeout`` for its signals."""

    def __init__(self, task: str, timeout: float, waits_for: str) -> None:
        self.task, self.timeout, self.waits_for = task, timeout, waits_for
        TimeoutError.__init__(
            self, f"task {task!r} waited {timeout:g}s for signal {waits_for} (timeout={timeout:g})"
        )


def known_signals(plan: Any) -> frozenset[str]:
    """The signals a run of ``plan`` can receive: those its tasks wait for and those of its
    subflows, their subflows... (each flow once)."""
    found = set(signals_of(plan.specs.values()))
    seen: set[int] = set()
    stack = list(planned_subflows(plan).values())
    while stack:
        flow = stack.pop().flow
        if id(flow) in seen:
            continue
        seen.add(id(flow))
        for task in flow.tasks.values():
            if task._options.wait_for is not None:
                found.update(task._options.wait_for.signals)
            if isinstance(task.fn, Subflow):
                stack.append(task.fn)
    return frozenset(found)


class Waits:
    """One run's signals and the tasks waiting for them (see the module docstring).

    The engine makes one per run when its plan waits for signals or has subflows, adds the
    waiting tasks to its gated ones, and calls :meth:`begin` when one leaves the ready queue.
    It keeps no reference to the engine: methods take it.
    """

    def __init__(self, plan: Any) -> None:
        #: task -> what it waits for (tasks with ``wait_for=`` only).
        self.tasks: dict[str, WaitFor] = plan.table(
            "wait_for",
            lambda: {n: w for n in plan.names if (w := plan.specs[n].wait_for) is not None},
        )
        self.transient = frozenset(n for n in self.tasks if plan.specs[n].transient)
        #: each deferred choice (its signals) -> whether it is transient (see check_choices).
        self.choices: dict[frozenset[str], bool] = {
            frozenset(w.choice): n in self.transient for n, w in self.tasks.items() if w.choice
        }
        self.known = plan.table("known_signals", lambda: known_signals(plan))
        #: signal -> (the order it came in, its last value).
        self.box: dict[str, tuple[int, Any]] = {}
        self._order = 0
        #: each deferred choice decided so far -> the signal that won it.
        self.decided: dict[frozenset[str], str] = {}
        #: tasks waiting now -> the mailbox's order when they began to wait.
        self.waiting: dict[str, int] = {}
        #: tasks whose signals came -> the values they receive (as their parameters of those
        #: names); their gates and wait are over (they take lock and slot).
        self.released: dict[str, dict[str, Any]] = {}
        #: tasks that received their signals in the run being resumed -> (the values of
        #: its signals, those it received).
        self.given: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {}
        self.children: list[Any] = []  # child engines the signals go on to
        #: waiting tasks whose gates were decided before they waited (see gates_first).
        self.gated: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._early: list[tuple[str, Any, str]] = []
        self._idle: Any = None

    # -- sending (any thread) -------------------------------------------------------------------

    def send(self, engine: Engine, signal: str, value: Any, sender: str) -> None:
        """Deliver ``signal`` to the run (``handle.send``, ``ctx.send``): at once on the run's
        loop, else as soon as the loop takes it; before the run began, as it begins.

        Raises:
            SignalError: nothing in the run waits for ``signal`` (with a close match), or
                the run is over.
        """
        if signal not in self.known:
            hint = closest(str(signal), self.known)
            raise SignalError(
                f"send({signal!r}): no task of flow {engine.plan.flow_name!r} (or of its "
                "subflows) waits for that signal"
                + (f"; did you mean {hint!r}?" if hint else f"; its signals: {sorted(self.known)}")
            )
        if engine.state.status not in (RunStatus.PENDING, RunStatus.RUNNING):
            raise SignalError(
                f"send({signal!r}): run {engine.run_id[:8]} of flow {engine.plan.flow_name!r} "
                f"is over ({engine.state.status.value}); nothing waits any more"
            )
        loop = engine.loop
        if loop is not None and running_loop() is not loop:
            loop.call_soon_threadsafe(self.receive, engine, signal, value, sender)
        else:
            self.receive(engine, signal, value, sender)

    def begun(self, engine: Engine, inherited: Iterable[tuple[str, Any, str]] = ()) -> None:
        """The run began: take the signals it inherits (a resumed run's, a parent's), then
        those sent before it began."""
        early, self._early = [*inherited, *self._early], []
        for signal, value, sender in early:
            self.receive(engine, signal, value, sender)
        loop = engine.loop
        add = getattr(loop, "add_idle", None)  # the simulated clock's (nbflow.clock)
        if add is not None and self.tasks:
            self._idle = lambda: self._stuck(engine)
            add(self._idle)

    # -- on the run's loop ----------------------------------------------------------------------

    def receive(self, engine: Engine, signal: str, value: Any, sender: str) -> None:
        """A signal came: keep it, pass it on to child runs, decide the choices it is the
        first of, wake the tasks it completes."""
        if engine._sched is None:  # not begun: begun() takes it
            self._early.append((signal, value, sender))
            return
        if engine.state.status is not RunStatus.RUNNING:
            return
        self._order += 1
        self.box[signal] = (self._order, value)
        engine._emit(ev.SignalReceived, signal, value, sender)
        for choice, transient in self.choices.items():  # a persistent choice: decided now
            if signal in choice and not transient and choice not in self.decided:
                self.decided[choice] = signal
        for child in list(self.children):
            if signal in child.waits.known:
                child.waits.receive(child, signal, value, f"parent run {engine.run_id[:8]}")
        for name in list(self.waiting):
            if name in self.waiting and signal in _involved(self.tasks[name]):
                self._settle(engine, name)

    def gates_first(
        self, engine: Engine, name: str
    ) -> tuple[TaskState, BaseException | None, str] | None:
        """Decide the gates (``when=``, branches) of ``name``, about to wait, whose gates
        the engine would decide only as it starts (a run that may reuse stored results:
        its upstream results may be stored ones): now, if they can be (no async callable,
        no stored result to read), so a task whose condition is false is skipped without
        waiting for its signals; else after its signals came, as it starts. The verdict,
        as ``gate_verdict``'s."""
        gates = engine.plan.gates[name]
        results = upstream_results(engine, name)
        if awaits(gates) or any(map(is_lazy, results.values())):
            return None
        verdict = gate_verdict(engine, name, results, None)
        if verdict is None:
            self.gated.add(name)
        return verdict

    def begin(self, engine: Engine, name: str) -> bool:
        """``name`` left the ready queue with its gates open: True when its signals are here
        (it goes on), else it now waits (or lost its choice: skipped) and False."""
        if name in self.given:  # received them in the run being resumed
            values, received = self.given[name]
            self._release(engine, name, values, received)
            return True
        self.waiting[name] = self._order
        outcome = self._verdict(engine, name, dispatch=False)
        if outcome is True:
            return True
        if outcome is None:  # it waits
            engine._inflight[name] = None
            wait = self.tasks[name]
            engine._emit(ev.TaskWaiting, name, wait.signals, wait.describe())
            timeout = engine.plan.specs[name].timeout
            if timeout is not None:
                assert engine.loop is not None
                self._timers[name] = engine.loop.call_later(timeout, self._expired, engine, name)
        return False

    def _settle(self, engine: Engine, name: str) -> None:
        """A signal came that ``name``, waiting, may need: wake it, skip it, or leave it."""
        if self._verdict(engine, name):
            engine._requeue(name)

    def _verdict(self, engine: Engine, name: str, dispatch: bool = True) -> bool | None:
        """Decide ``name``, waiting since ``self.waiting[name]``: True (released), False
        (skipped: it lost its choice) or None (it goes on waiting). ``dispatch``: whether
        a skip may place the tasks it makes ready (not while the engine is placing)."""
        wait = self.tasks[name]
        since = self.waiting[name] if name in self.transient else 0
        came = {s for s in _involved(wait) if s in self.box and self.box[s][0] > since}
        if wait.choice:
            key = frozenset(wait.choice)
            winner = self.decided.get(key)
            if winner is None and came & set(wait.choice):
                winner = min(came & set(wait.choice), key=lambda s: self.box[s][0])
                self.decided[key] = winner
            if winner is None:
                return None
            if wait.first or winner in wait.signals:
                values = {s: self.box[winner][1] if s == winner else None for s in wait.signals}
                self._release(engine, name, values, (winner,))
                return True
            self._forget(engine, name)
            reason = f"deferred choice: {winner!r} came first"
            engine._emit(ev.TaskSkipped, name, S.SKIPPED.value, reason)
            engine._after_task(name, S.SKIPPED, dispatch=dispatch)
            return False
        mine = came & set(wait.signals)
        if (wait.first and mine) or mine == set(wait.signals):
            values = {s: self.box[s][1] if s in mine else None for s in wait.signals}
            self._release(engine, name, values, tuple(s for s in wait.signals if s in mine))
            return True
        return None

    def _release(
        self, engine: Engine, name: str, values: dict[str, Any], received: tuple[str, ...]
    ) -> None:
        self._forget(engine, name)
        self.released[name] = values
        engine._emit(ev.TaskSignalled, name, received)

    def _forget(self, engine: Engine, name: str) -> None:
        """``name`` no longer waits: its timer is cancelled, it is not in flight."""
        self.waiting.pop(name, None)
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        if name in engine._inflight and engine._inflight[name] is None:
            del engine._inflight[name]

    def withdraw(self, engine: Engine, name: str) -> bool:
        """Take ``name`` out of the waiting room (it is being cancelled); whether it waited."""
        if name not in self.waiting:
            return False
        self._forget(engine, name)
        return True

    def _expired(self, engine: Engine, name: str) -> None:
        if name not in self.waiting or engine._stopping:
            return
        wait = self.tasks[name]
        self._forget(engine, name)
        timeout = engine.plan.specs[name].timeout
        assert timeout is not None
        error = SignalTimeoutError(name, timeout, wait.describe())
        engine._emit(ev.TaskFailed, name, 0, error, format_error(error))
        engine._after_task(name, S.FAILED)

    def _stuck(self, engine: Engine) -> None:
        """The simulated loop has nothing left to do: if this run only waits, nobody can
        send what it waits for; its waiting tasks fail."""
        if not self.waiting or engine._stopping or engine._runners:
            return
        for name in list(self.waiting):
            if name not in self.waiting:
                continue
            wait = self.tasks[name]
            self._forget(engine, name)
            error = SimulationError(
                f"simulated run: task {name!r} waits for signal {wait.describe()}, and nothing "
                "left in the run can send it (no task runs, no timer is due); send it from a "
                "task (nf.context().send) or give the task a timeout="
            )
            engine._emit(ev.TaskFailed, name, 0, error, format_error(error))
            engine._after_task(name, S.FAILED)

    def close(self, engine: Engine) -> None:
        """The run is over: no timer is left, no child is told any more."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.children.clear()
        remove = getattr(engine.loop, "remove_idle", None)
        if remove is not None and self._idle is not None:
            remove(self._idle)
            self._idle = None

    def stop(self, engine: Engine, reason: str) -> None:
        """The run is stopping: every waiting task ends ``cancelled``."""
        for name in list(self.waiting):
            self._forget(engine, name)
            engine._emit(ev.TaskCancelled, name, 0, None, reason)
            sch.record(engine.sched, name, S.CANCELLED)


def _involved(wait: WaitFor) -> tuple[str, ...]:
    """The signals that can decide a task: its own, and those of its choice."""
    return wait.choice or wait.signals


def resumed(waits: Waits, events: Iterable[ev.Event], run_id: str) -> list[tuple[str, Any, str]]:
    """What a run resuming ``run_id`` (whose stored ``events`` these are) takes from it:
    its signals, in the order they came, to inherit; and (into ``waits.given``) the values
    each task received there, which it receives again instead of waiting."""
    sender = f"resumed from run {run_id[:8]}"
    inherited: list[tuple[str, Any, str]] = []
    box: dict[str, Any] = {}
    for event in sorted(events, key=lambda e: e.seq):
        if isinstance(event, ev.SignalReceived):
            box[event.signal] = event.value
            if event.signal in waits.known:
                inherited.append((event.signal, event.value, sender))
        elif isinstance(event, ev.TaskSignalled) and event.task in waits.tasks:
            wait = waits.tasks[event.task]
            values = {s: box.get(s) if s in event.signals else None for s in wait.signals}
            waits.given[event.task] = (values, tuple(event.signals))
    return inherited
