"""The asyncio engine: runs one run of a plan on the current event loop.

::

    scheduler: ready (strategy's order) --dispatch--> gates --> a slot (max_workers, pool)
        --> placed --> a runner takes it: one task (nbflow.attempts) --> ended
    ended --> scheduler.complete() --> dependants queued / skipped / upstream_failed

Every asyncio task a run creates is a child of the run's :class:`asyncio.TaskGroup`, so each
has finished before the run returns, however many times it is cancelled. A *runner* is such
a child: it runs placed tasks one after another, so a task that completes without waiting
costs no ``create_task`` and no loop round trip (most of what a plain asyncio DAG spends per
node). More runners start, doubling per loop turn, while placed tasks wait because the
running ones wait (I/O, sleeps, threads), not while they merely yield. The runners share
one :data:`~nbflow.attempts.TIME_SLICE` per loop turn: once a turn's slice is spent, each
yields after its task, so widgets and other coroutines run at least every slice however
many runners there are.

Each step is an event: the engine folds it into the run's :class:`~nbflow.state.RunState`,
hands it to the store's journal, then to subscribers.

A failure stops the run when ``on_error="stop"`` or the task is ``critical``; so does
:meth:`Engine.cancel` (``handle.cancel()``, Kernel -> Interrupt), and so does cancelling the
task that awaits the run: nothing new starts, running tasks are cancelled once (their
cleanup runs to its end, however many cancels follow), and tasks that never started end
``cancelled``.

Longer than 500 lines (about 800): the run's lifecycle and its dispatch share their state
(the scheduler's state, the slots, the runners, the TaskGroup) and read best side by side.
One task's half is :mod:`nbflow.attempts`; tasks waiting for signals are
:mod:`nbflow.waits`, cancelling part of a run :mod:`nbflow.termination`, locks
:mod:`nbflow.locks`: each hooks in where a task leaves the ready queue, and costs nothing
to a flow that does not use it.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import operator
import time
from collections.abc import Callable
from typing import Any

from . import events as ev
from . import scheduler as sch
from .attempts import (
    TIME_SLICE,
    attempt_over,
    cancelled_from_outside,
    format_error,
    gate_verdict,
    plain_tasks,
    run_plain,
    run_task,
    task_raised,
    upstream_results,
)
from .children import kernel_tasks, run_funcs
from .collector import frozen_gc
from .errors import describe
from .events import EventBus
from .executors import LocalExecutor
from .gates import awaits, needs_local
from .graph import Plan
from .lifecycle import RunStatus, TaskState
from .limits import Slots
from .locks import Locks, RunLocks, locks_of
from .mapping import pairs
from .middleware import Context, call_with, handlers_for
from .middleware.chain import MiddlewareError
from .overhead import warn_if_overhead_dominates
from .pool import Pool
from .runners import special_tasks
from .state import HANDLERS as _APPLY
from .state import RunState
from .streams import Stream, stream_consumers, streamers
from .termination import Termination, joins_of
from .waits import Waits, known_signals

S = TaskState
_FAILED = S.FAILED
_STATE = operator.attrgetter("state")
_SUCCEEDED = ev.TaskSucceeded
log = logging.getLogger("nbflow.engine")


def prepare(plan: Plan) -> None:
    """Work out now what every run of ``plan`` reads that depends on the plan alone: the
    engine's tables of it and the scheduler's.

    :meth:`Flow.plan <nbflow.flow.Flow.plan>` calls it as it makes a plan (definition
    time), so that runs spend their time on their own work. Each table is kept in the
    plan's memo (:meth:`~nbflow.graph.Plan.table`): a run makes what it finds missing
    (a plan made elsewhere).
    """
    for key in _TABLES:
        _table(plan, key)
    sch.prepare(plan)
    joins_of(plan)
    stream_consumers(plan)
    streamers(plan)
    plan.roots()
    plan.with_free_params()


def _gated(plan: Plan) -> frozenset[str]:
    return frozenset(n for n, g in plan.gates.items() if g)


def _async_gated(plan: Plan) -> frozenset[str]:
    return frozenset(n for n in _table(plan, "gated") if awaits(plan.gates[n]))


def _fan_outs(plan: Plan) -> tuple[str, ...]:
    return tuple(n for n in plan.names if plan.specs[n].fan_out)


def _locked(plan: Plan) -> dict[str, str]:
    return {n: s.lock for n in plan.names if (s := plan.specs[n]).lock}


#: The engine's tables of a plan, by their key in its memo, and how each is made.
_TABLES: dict[str, Callable[[Plan], Any]] = {
    "gated": _gated,
    "async_gated": _async_gated,
    "sync_gated": lambda plan: _table(plan, "gated") - _table(plan, "async_gated"),
    "fan_outs": _fan_outs,
    # Tasks that hold no slot themselves: a fan-out's elements and a subflow's child run
    # take theirs (see nbflow.limits).
    "slotless": lambda plan: frozenset(_table(plan, "fan_outs")) | _table(plan, "in_kernel"),
    "plain_tasks": plain_tasks,
    "locked": _locked,
    "signalled": lambda plan: bool(known_signals(plan)),
    "special": special_tasks,
    "in_kernel": kernel_tasks,
    "funcs": run_funcs,
    "sync": lambda plan: frozenset(n for n in plan.names if not plan.specs[n].is_async),
}


def _table(plan: Plan, key: str) -> Any:
    return plan.table(key, functools.partial(_TABLES[key], plan))


class Engine:
    """Runs one run of a :class:`~nbflow.graph.Plan`; create one per run."""

    def __init__(
        self,
        plan: Plan,
        *,
        flow_version: str = "",
        run_id: str,
        variables: dict[str, Any],
        strategy: Any,
        max_workers: int | None,
        on_error: str,
        bus: EventBus,
        pool: Pool | None = None,
        executor: Any = None,
        middleware: list[Any] | None = None,
        wall_start: float | None = None,
        parent_run: str | None = None,
        hooks: Any = None,
        journal: Any = None,
        locks: Locks | None = None,
    ) -> None:
        self.plan = plan
        self.flow_version = flow_version
        self.run_id = run_id
        self.variables = variables
        self.strategy = strategy
        limit = getattr(strategy, "max_workers", None)
        self.max_workers = (
            min(x for x in (max_workers, limit) if x) if max_workers or limit else None
        )
        self.on_error = on_error
        self.bus = bus
        self.pool = pool
        self.slots = Slots(self.max_workers, pool, self._wake)
        self.executor: Any = executor or LocalExecutor(self.max_workers)
        self._owns_executor = executor is None
        self.run_mw = handlers_for(middleware or [], "run")
        self.task_mw = handlers_for(middleware or [], "task")
        self.wall_start = wall_start
        self.parent_run = parent_run
        self.hooks = hooks  # resume and cache lookups (see nbflow.cache); None for none
        # The store's recorder: its log takes every event's row before subscribers see the
        # event (one C-level list extend each), keep() takes each result as its task
        # returns, and the run waits for finished() before it returns (nbflow.store.recorder).
        self.journal = journal
        self._record: Callable[[Any], None] | None = (
            journal.log.extend if journal is not None else None
        )
        self._logged: frozenset[type] = journal.logged if journal is not None else frozenset()
        self._keep: Callable[..., Any] | None = journal.keep if journal is not None else None
        self.state = RunState()
        #: What tasks print, log and report (a :class:`nbflow.logs.RunOutput`, given by the
        #: flow for the run; None: nothing is captured).
        self.output: Any = None
        self._subscribers = bus.subscribers
        self._seq = 0
        self._inflight: dict[str, asyncio.Task[Any] | None] = {}  # placed -> its runner
        self._placed: collections.deque[tuple[str, str | None]] = collections.deque()
        self._runners: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._spawn_pending = self._dispatch_pending = False
        # The loop turn's shared slice: runners yield once it is spent (see the module); the
        # first runner back from its yield starts the next one (turns: slices started).
        self._slice_end = 0.0
        self._turns = 0
        self._yielding = 0  # runners between two tasks, yielding to the loop
        self._stopping = False
        self._cancel_requested = False
        # A subscriber's KeyboardInterrupt or SystemExit, raised when the run has ended.
        self._raise_after: BaseException | None = None
        self._final_status: RunStatus | None = None
        self._sched: sch.SchedulerState | None = None
        self._done: asyncio.Future[None] | None = None
        # While a run middleware runs, the end of the tasks resolves this instead of ending
        # the run: the middleware's code after call_next() is part of the run (it may fail it).
        self._settled: asyncio.Future[None] | None = None
        self._in_middleware = False
        self.loop: asyncio.AbstractEventLoop | None = None
        # Inputs from run variables, resolved once per run, listed only for the tasks that
        # have such parameters (few), so a run starts in O(those).
        self._var_params: dict[str, tuple[str, ...]] = {}
        self._wants_worker: set[str] = set()
        for n in plan.with_free_params():
            params = plan.free_params[n]
            self._var_params[n] = tuple(p.name for p in params if p.name in variables)
            if any(p.name == "worker" for p in params):
                self._wants_worker.add(n)
        # Gates are decided as a task is placed; an async ``when=`` is awaited as the task's
        # first step instead, and so are all gates when upstream results may be stored ones,
        # read only when needed (hooks).
        self._async_gated: frozenset[str] = _table(plan, "async_gated")
        self._gated: frozenset[str] = _table(plan, "sync_gated")
        if hooks is not None:
            self._async_gated, self._gated = _table(plan, "gated"), frozenset()
        # Tasks that hold no slot themselves: a fan-out's elements and a subflow's child run
        # take theirs (see nbflow.limits).
        self._slotless: frozenset[str] = _table(plan, "slotless")
        # A remote executor (nbflow.dask) returns handles to results that stay on the cluster;
        # results the kernel itself reads (gates, fan-out sources, the cache) are fetched.
        self._remote = bool(getattr(self.executor, "remote_results", False))
        self._fetch = needs_local(plan) if self._remote else frozenset()
        self._inline_async = type(self.executor) is LocalExecutor
        # Tasks whose only step is one await of their function (see attempts.run_plain).
        self._plain: frozenset[str] = (
            _table(plan, "plain_tasks")
            if self._inline_async and hooks is None and not self.task_mw
            else frozenset()
        )
        # Cancelling part of the run, joins that cancel the rest, ctx.finish()
        # (nbflow.termination); locks (nbflow.locks): a locked task takes its lock as its
        # gates open, before it takes a slot. Empty for flows that use none of them.
        self.scope = Termination(plan)
        self._stop_reason = ""
        self._locked: dict[str, str] = _table(plan, "locked")
        if self._locked:  # a locked task takes its lock as its gates are decided
            self._gated = self._gated.union(self._locked)
        self._lock_table = locks
        self.locks: RunLocks | None = None
        # Signals (nbflow.waits): a task that waits for some is decided as its gates open,
        # before its lock and slot. None for flows that neither wait nor have subflows.
        self.waits: Waits | None = Waits(plan) if _table(plan, "signalled") else None
        if self.waits is not None:
            self._gated = self._gated.union(self.waits.tasks)
        #: Signals the run starts with: (signal, value, sender) of a resumed run or a parent.
        self.inherited: list[tuple[str, Any, str]] = []
        #: The flows of the runs this one is a child of, outermost first (nbflow.children).
        self.lineage: tuple[str, ...] = ()
        # How tasks that are not plain function calls run (fan-outs, loops, subflows, tasks
        # given signals): one lookup per task (nbflow.attempts.run_task).
        self._special: dict[str, Any] = _table(plan, "special")
        # Tasks whose calls run in the kernel whatever the executor (subflows), and what the
        # engine calls for each task (a subflow's: its child run; nbflow.children).
        self._in_kernel: frozenset[str] = _table(plan, "in_kernel")
        self._funcs: dict[str, Callable[..., Any]] = _table(plan, "funcs")
        #: Fan-out task -> {element index: the lane running it}, while its elements run
        #: (ctx.finish() from an element cancels the others: nbflow.termination).
        self._lanes: dict[str, dict[int, asyncio.Task[Any]]] = {}
        #: Fan-out task -> the lanes its window cancelled (an element's lane cancelled by no
        #: one of the run's was cancelled by the element itself: see attempts.run_attempts).
        self._asked_lanes: dict[str, set[asyncio.Task[Any]]] = {}
        # Streaming (nbflow.streams): producer -> its consumers, the tasks whose result may
        # be an iterator to read out, and the streams opened in this run (by producer).
        self._stream_consumers = stream_consumers(plan)
        self._streamers = streamers(plan)
        self._streams: dict[str, Stream] = {}

    # -- events ----------------------------------------------------------------------------

    def _emit(self, cls: type[ev.Event], *args: Any) -> None:
        seq, t = self._seq, self._clock() - self._t0
        event = cls(self.run_id, seq, t, *args)
        self._seq = seq + 1
        state = self.state  # RunState.apply, inline (three events per task)
        state.last_seq, state.last_t = seq, t
        _APPLY[cls](state, event)
        record = self._record
        if record is not None:
            # The row the event was made from; a result that is not a plain value stays out
            # of it (the store keeps results apart: keep()).
            if cls is _SUCCEEDED and type(args[2]) not in self._logged:
                args = (*args[:2], None, *args[3:])
            # At the end of the run's log (its seq: its place there); a concatenation builds
            # one tuple less than (cls, t, *args): 25 ns of the 90 an event costs here.
            record((cls, t) + args)  # noqa: RUF005
        if self._subscribers:  # the bus's own list: subscribers may come and go mid-run
            try:
                self.bus.publish(event)
            except (KeyboardInterrupt, SystemExit) as stop:  # from a subscriber's own code
                self._subscriber_stop(stop)

    def _subscriber_stop(self, stop: BaseException) -> None:
        """A subscriber raised ``KeyboardInterrupt`` or ``SystemExit``: not the fault of
        the task whose event it was given, and no place to end the run from. The run is
        cancelled as an interrupt would cancel it, and ``stop`` raised once it has ended."""
        if self._raise_after is None:
            self._raise_after = stop
        self.cancel()

    def _emit_transition(self, transition: sch.Transition) -> None:
        for name in transition.queued:
            self._emit(ev.TaskQueued, name)
        for name, state, reason in transition.resolved:
            self._emit(ev.TaskSkipped, name, state.value, reason)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> RunState:
        """Execute the plan to the end (or until stopped or cancelled); return the state.

        Raises:
            CancelledError: the task awaiting the run was cancelled (the run is then over,
                recorded ``cancelled``, every task of it finished).
            KeyboardInterrupt, SystemExit: a subscriber raised it; the run was cancelled
                first, and is over.
        """
        with frozen_gc():  # nothing, unless NBFLOW_GC_FREEZE=1 (see nbflow.collector)
            state = await self._run()
        if self._raise_after is not None:  # a subscriber's KeyboardInterrupt or SystemExit
            raise self._raise_after
        return state

    async def _run(self) -> RunState:
        self.loop = loop = asyncio.get_running_loop()
        self.slots.loop = loop
        # The loop's clock; time.monotonic itself when that is all loop.time() does.
        self._clock = time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        self._t0 = loop.time()
        # Sync tasks the local executor runs in its threads, where a call may wait for a
        # thread: their attempts' rows start when the body began (attempts.run_attempts),
        # read on the loop's clock, so only when that clock is time.monotonic.
        self._threaded: frozenset[str] = (
            _table(self.plan, "sync")
            if self._inline_async and self._clock is time.monotonic
            else frozenset()
        )
        self._key = self.strategy.prepare(self.plan)
        self._done = loop.create_future()
        plan = self.plan
        if self._locked:
            table = self._lock_table or locks_of(loop)
            remote = getattr(self.executor, "remote_locks", None)  # Dask: the cluster's too
            self.locks = RunLocks(
                table, plan.flow_name, self.run_id, self._locked, loop, self._lock_granted,
                remote() if remote is not None else None,
            )  # fmt: skip
        self._emit(
            ev.RunStarted, plan.flow_name, self.flow_version, plan.names, dict(self.variables),
            self.wall_start if self.wall_start is not None else time.time(),
            _table(plan, "fan_outs"),
            self.parent_run,
        )  # fmt: skip
        if self.hooks is not None:
            self.hooks.bind(self.state)
        if self.journal is not None:
            self.journal.started()
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                if self._cancel_requested:  # cancelled before it could start
                    self._stop(RunStatus.CANCELLED)
                else:
                    self._main_task = group.create_task(self._main())
                try:
                    await self._done
                except asyncio.CancelledError:
                    self._stop(RunStatus.CANCELLED)
                    if self._main_task is not None:  # the run middleware, told too
                        self._main_task.cancel()
                    await self._wind_down()
                    raise
        except asyncio.CancelledError:
            self._finalize()
            raise
        except BaseException as error:  # a runner crashed (KeyboardInterrupt, a bug)
            self.state.error = describe(error)
            self._final_status = RunStatus.FAILED
            self._finalize()
            raise
        finally:
            self._group = None  # (it holds the task awaiting the run)
            self.slots.close()
            if self.locks is not None:
                self.locks.close()
            if self.waits is not None:
                self.waits.close(self)
            if self._owns_executor:
                self.executor.close()
            if self.journal is not None:
                # The run is over; the loop keeps serving widgets while the store writes the
                # rest of it (bounded by the store's timeout, and shielded from a cancel).
                failure = await self.journal.finished(self.state)
                if failure is not None:
                    self.state.store_error = str(failure)
        return self.state

    async def _wind_down(self) -> None:
        """Wait until every task of the run has ended, however often the task awaiting the
        run is cancelled meanwhile.

        :meth:`_stop` cancelled each running task once; its cleanup (``finally:`` blocks
        that await) runs to its end, as in an :class:`asyncio.TaskGroup`, whose children
        are cancelled once too. Raising into the group at once instead would have it
        cancel them again, cutting that cleanup short.
        """
        while pending := [t for t in (*self._runners, self._main_task) if t and not t.done()]:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError:
                continue  # cancelled again: the tasks were told once, they are ending

    async def _main(self) -> None:
        """Begin the run, inside the run middleware if any."""
        if self._stopping:  # cancelled after the run started, before this task ran
            return
        handlers = self.run_mw
        if not handlers:
            self._begin()
            return
        ctx = Context("run", self.run_id, self.plan.flow_name, self.variables)
        began = False
        assert self.loop is not None
        self._settled = settled = self.loop.create_future()

        async def innermost() -> RunState:
            nonlocal began
            began = True
            if not self._stopping:
                self._begin()
            await asyncio.shield(settled)
            return self.state

        self._in_middleware = True
        try:
            await call_with(handlers, ctx, innermost)
        except asyncio.CancelledError as cancelled:
            if cancelled_from_outside():
                raise
            # A run middleware raised CancelledError of its own accord: its failure.
            self._in_middleware = False
            self._fail_run(MiddlewareError("run middleware raised CancelledError"), cancelled)
            return
        except Exception as error:  # a run middleware failed: fail the run, keep the error
            self._in_middleware = False
            self._fail_run(MiddlewareError(f"run middleware failed: {describe(error)}"), error)
            return
        self._in_middleware = False
        if not began:
            names = ", ".join(getattr(h, "__qualname__", repr(h)) for h in handlers)
            self._fail_run(
                MiddlewareError(
                    f"a run middleware ({names}) returned without calling call_next(): the "
                    "run never started. A run middleware must `return await call_next()` "
                    "(or raise to stop the run)"
                ),
                None,
            )
            return
        self._maybe_finish()

    def _fail_run(self, error: BaseException, cause: BaseException | None) -> None:
        if cause is not None:
            error.__cause__ = cause
        self.state.error = str(error)
        self.state.run_error = error
        self._stop(RunStatus.FAILED)

    def _begin(self) -> None:
        self._sched, transition = sch.initial(self.plan, self._key)
        self._emit_transition(transition)
        if self.waits is not None:  # signals it inherits, and those sent before it began
            self.waits.begun(self, self.inherited)
        self.scope.begun(self)  # cancels asked for before the run began
        self._dispatch()
        self._maybe_finish()

    def cancel(self) -> None:
        """Stop the run: nothing new starts, running tasks are cancelled; status cancelled.

        Safe at any moment, also before the run starts (it then starts and stops at once).
        """
        if self.loop is None:
            self._cancel_requested = True
        elif not self._stopping:
            self._stop(RunStatus.CANCELLED)

    def _stop(
        self, status: RunStatus, spare: asyncio.Task[Any] | None = None, reason: str = ""
    ) -> None:
        """Stop the run with ``status``; ``spare``: a runner left to end its task (the one
        that called ``ctx.finish()``); ``reason``: what the tasks cancelled now are told."""
        if self._final_status in (None, RunStatus.SUCCEEDED) or status is RunStatus.CANCELLED:
            self._final_status = status  # (a failure after ctx.finish() fails the run)
        self._stop_reason = self._stop_reason or reason
        if not self._stopping:  # running tasks are cancelled once: their cleanup runs
            self._stopping = True
            being_cancelled = set(self.scope.targeted.values())  # on their own, already
            for runner in list(self._runners):
                if runner is not spare and runner not in being_cancelled:
                    runner.cancel(self._stop_reason or None)  # (the CancelledError's args)
        while self._placed:  # placed, not begun: cancelled as they are
            name, worker = self._placed.popleft()
            self._inflight.pop(name, None)
            if worker is not None:
                self.slots.release(worker)
            if self.locks is not None:
                self.locks.release(name)
            self._emit(ev.TaskCancelled, name, 0, None, self._stop_reason)
            sch.record(self.sched, name, S.CANCELLED)
        if self.locks is not None:  # tasks waiting for their lock hold nothing: cancelled
            for name in list(self.locks.waiting):
                self.locks.withdraw(name)
                self._inflight.pop(name, None)
                self._emit(ev.TaskCancelled, name, 0, None, self._stop_reason)
                sch.record(self.sched, name, S.CANCELLED)
        if self.waits is not None and self._sched is not None:  # nor do those waiting for
            self.waits.stop(self, self._stop_reason)  # signals
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self._inflight or (not self._stopping and (self._sched is None or self._sched.ready)):
            return
        if self._in_middleware:  # its code after call_next() runs first, then the run ends
            if self._settled is not None and not self._settled.done():
                self._settled.set_result(None)
            return
        self._finalize()

    def _finalize(self) -> None:
        if self.state.status not in (RunStatus.RUNNING, RunStatus.PENDING):
            return
        sched = self._sched
        if sched is not None:
            leftover = [name for _, name in sched.queued()] + sch.undecided(self.plan, sched)
            leftover += list(self._inflight)
            sched.ready.clear()
            sched.ready_heap.clear()
        else:  # stopped before the first task was queued (a run middleware failed)
            leftover = list(self.plan.names)
        for name in dict.fromkeys(leftover):
            if self.state.tasks[name].state not in (S.SKIPPED, S.UPSTREAM_FAILED, S.CANCELLED):
                self._emit(ev.TaskCancelled, name, 0, None, self._stop_reason)
        status = self._final_status
        if status is None:
            failed = _FAILED in map(_STATE, self.state.tasks.values())
            status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
        self._emit(ev.RunFinished, status.value, self.state.error)
        if self.wall_start is None:  # real time only: simulated durations say nothing
            warn_if_overhead_dominates(self.state)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def add_done_callback(self, callback: Callable[[], None]) -> bool:
        """Have ``callback()`` called on the run's loop as soon as the run is over: after its
        ``RunFinished`` event is folded into :attr:`state`, or when the task awaiting the run
        is cancelled (the run then ends a moment later, on the bus).

        Callbacks run in the order added, before the code awaiting the run resumes, so an
        observer can draw a run's end without subscribing to every event. Returns False,
        registering nothing, when the run is not going on (not started yet, or over).
        """
        done = self._done
        if done is None or done.done():
            return False
        done.add_done_callback(lambda _: callback())
        return True

    def cancel_reason(self, task: str) -> str:
        """Why ``task`` is being cancelled, in words ("" when nobody said)."""
        return self.scope.why(task) or self._stop_reason

    # -- streaming (nbflow.streams) ------------------------------------------------------------

    def open_stream(self, name: str) -> Stream | None:
        """``name`` begins to produce: its consumers that only waited for it are queued now
        (:func:`nbflow.scheduler.opened`); its stream, or None when nothing streams from it
        (or the run is stopping). A retried attempt gets the stream its first one opened."""
        consumers = self._stream_consumers.get(name)
        if not consumers or self._stopping:
            return None
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = Stream(name, consumers)
            transition = sch.opened(self.plan, self.sched, name, consumers, self._key)
            if transition.queued:
                self._emit_transition(transition)
                self._dispatch()
        return stream

    def streams_into(self, name: str) -> bool:
        """Whether fan-out task ``name`` reads a source that streams in this run."""
        if not self._streams:
            return False
        fan_out = self.plan.specs[name].fan_out
        return fan_out is not None and any(s in self._streams for _, s in pairs(fan_out))

    def attempt_over(self, task: str, element: int | None, attempt: int) -> bool:
        """Whether that attempt should stop (``nf.context().cancelled``): see
        :func:`nbflow.attempts.attempt_over`."""
        return attempt_over(self, task, element, attempt)

    # -- dispatch --------------------------------------------------------------------------

    @property
    def sched(self) -> sch.SchedulerState:
        """The scheduler state (exists once the run has begun)."""
        assert self._sched is not None, "the run has not begun"
        return self._sched

    def _dispatch(self) -> None:
        """Place ready tasks while slots are free: open their gates, give each a slot (a
        fan-out task none: its elements take theirs), and queue them for runners, best
        first. A task that gets no slot (the pool has no free worker for it) waits in the
        ready queue; the others still go."""
        sched, slots, gated, placed = self._sched, self.slots, self._gated, self._placed
        assert sched is not None, "the run has not begun"
        ready, inflight, slotless = sched.ready, self._inflight, self._slotless
        specs = self.plan.specs
        unplaced: list[tuple[Any, str]] = []
        while ready and not self._stopping:
            if slots.full and not slotless:  # nothing could be placed: leave them queued
                break
            item = sch.take(sched)
            name = item[1]
            sched.running.add(name)
            if gated and name in gated and not self._gates_open(name):
                continue
            worker: str | None = None
            if name not in slotless:
                worker = slots.take(name, specs[name].worker)
                if worker is None:  # no slot free, or none the task can use (a pool's)
                    unplaced.append(item)
                    if slots.full:
                        break
                    continue
            inflight[name] = None  # placed: a runner takes it
            placed.append((name, worker))
        if unplaced:
            sch.push_back(sched, unplaced)
        self._spawn_later()

    def _gates_open(self, name: str) -> bool:
        """Decide the gates of a task being placed; a closed gate skips it, an error fails
        it (both end it here). A task with a lock then takes it, or waits for it holding
        nothing, as in flight (:meth:`_lock_granted` places it when its turn comes)."""
        locks = self.locks
        if locks is not None and name in locks.holding:
            return True  # its lock came: its gates were decided before it waited
        waits = self.waits
        verdict = None
        if waits is None or name not in waits.released:  # else: decided before it waited
            if name not in self._async_gated:
                verdict = gate_verdict(self, name, upstream_results(self, name), None)
            elif waits is not None and name in waits.tasks:  # decided before it waits
                verdict = waits.gates_first(self, name)  # when it can be, as a rule
            if (
                verdict is None
                and waits is not None
                and name in waits.tasks
                and not waits.begin(self, name)
            ):
                return False  # it waits for its signals, holding nothing (or lost them)
        if verdict is None:
            if locks is None or locks.take(name):
                return True
            self._inflight[name] = None  # waits for its lock: the run is not over
            return False
        outcome, error, reason = verdict
        self.sched.running.discard(name)
        if outcome is S.SKIPPED:
            self._emit(ev.TaskSkipped, name, outcome.value, reason)
        else:
            self._emit(ev.TaskFailed, name, 0, error, format_error(error))
        self._after_task(name, outcome, dispatch=False)
        return False

    def _lock_granted(self, name: str) -> None:
        """The lock ``name`` waited for is its now: back to the ready queue, placed first."""
        if self._stopping:
            self._inflight.pop(name, None)
            assert self.locks is not None
            self.locks.release(name)
            return
        self._requeue(name)

    def _requeue(self, name: str) -> None:
        """``name``, which waited (for its lock or its signals) holding nothing, goes back
        to the ready queue, and is placed at once if a slot is free."""
        self._inflight.pop(name, None)
        if self._stopping:
            return
        sch.push_back(self.sched, [(self._key(name), name)])
        self._dispatch()
        self._maybe_finish()

    def _wake(self) -> None:
        """A slot may be free for a ready task (a pool worker handed over by another run)."""
        if self._sched is not None and not self._stopping:
            self._dispatch()
            self._maybe_finish()

    def _dispatch_soon(self) -> None:
        """Dispatch on the loop's next turn (once): a fan-out element freed a slot."""
        if not self._dispatch_pending and self._sched is not None and self._sched.ready:
            self._dispatch_pending = True
            self.loop.call_soon(self._dispatch_now)  # type: ignore[union-attr]

    def _dispatch_now(self) -> None:
        self._dispatch_pending = False
        if not self._stopping:
            self._dispatch()

    def _spawn_later(self) -> None:
        """Have :meth:`_spawn` run on the loop's next turn if placed tasks wait (once)."""
        if self._placed and not self._spawn_pending and not self._stopping:
            self._spawn_pending = True
            self.loop.call_soon(self._spawn)  # type: ignore[union-attr]

    def _spawn(self) -> None:
        """Start runners for placed tasks no runner took: one per task, but at most as many
        new runners as run already (at least one); come back on the next turn for the rest.

        The count doubles per turn: tasks that wait all start within a few turns (log2 of
        their number), and a burst of instant tasks is not spread over runners it does not
        need."""
        self._spawn_pending = False
        group = self._group
        if group is None or self._stopping:
            return
        # A runner that merely yielded (its slice was spent) takes placed tasks when it
        # resumes: none is started while one does, or each turn would double the runners of
        # a burst of instant tasks (and a turn runs one task of each).
        wanted = len(self._placed) if not self._yielding else 0
        for _ in range(min(wanted, max(1, len(self._runners)))):
            runner = group.create_task(self._runner())
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)
        self._spawn_later()

    async def _runner(self) -> None:
        """Run placed tasks one after another until none is left (see the module)."""
        me = asyncio.current_task()
        assert me is not None
        clock, placed, inflight, slots = self._clock, self._placed, self._inflight, self.slots
        targeted, locks, plain = self.scope.targeted, self.locks, self._plain
        if not self._slice_end:  # the run's first runner starts the first slice
            self._slice_end = clock() + TIME_SLICE
        while placed and not self._stopping:
            name, worker = placed.popleft()
            inflight[name] = me
            outcome: S | None
            try:
                if name in plain:
                    outcome = await run_plain(self, name, worker)
                else:
                    outcome = await run_task(self, name, worker)
            except (asyncio.CancelledError, Exception) as error:
                outcome = task_raised(self, name, error)
            finally:
                inflight.pop(name, None)
                if worker is not None:
                    slots.release(worker)
            if targeted:  # a task cancelled on its own: this runner goes on
                self.scope.settle(name, me)
            # A cancel of this runner that nothing of the run asked for (the task cancelled
            # `asyncio.current_task()`) would fall on the next task it ran: it leaves after
            # this one, and a new runner takes the placed tasks.
            leave = me.cancelling() > 0 and not self._stopping
            if locks is not None:
                locks.release(name)
            if outcome is not None:
                self._after_task(name, outcome)
            else:  # it completed early (complete_when: nbflow.completion); now it is over
                self._maybe_finish()
            if leave:
                if locks is not None and locks.remote is not None and self._group is not None:
                    self._group.create_task(locks.release_remote(name))  # (not awaited here)
                self._spawn_later()
                return
            if locks is not None and locks.remote is not None:
                # After the task is decided: a cancel arriving during this await finds it
                # over (before, it would have been decided twice).
                await locks.release_remote(name)
            if clock() >= self._slice_end:  # this turn's slice is spent: let the loop run
                self._yielding += 1
                turns = self._turns
                try:
                    await asyncio.sleep(0)
                finally:
                    self._yielding -= 1
                # The first runner back starts the turn's slice; the others, back in the same
                # turn, find it started (else each would start one: a turn as long as a slice
                # per runner, and no timer, widget or store tick run meanwhile).
                if turns == self._turns:
                    self._turns = turns + 1
                    self._slice_end = clock() + TIME_SLICE

    def _after_task(self, name: str, outcome: S, *, dispatch: bool = True) -> None:
        """Decide the dependants of a finished task and place what became ready."""
        sched = self._sched
        assert sched is not None, "the run has not begun"
        if self._streams:  # a producer that streamed: its consumers counted it as it opened
            stream = self._streams.get(name)
            if stream is not None:
                stream.end(outcome)
                sch.streamed(sched, stream.consumers, outcome)
        if self._stopping:
            # Dependants of work cut short by a stop end `cancelled` (in _finalize), not
            # `upstream_failed`: nothing upstream of them failed on its own.
            sch.record(sched, name, outcome)
            if outcome is _FAILED and self._final_status is RunStatus.SUCCEEDED:
                # ctx.finish() promised success; the attempt that called it (or a task's
                # cleanup as it was cancelled) failed after all.
                self._final_status = RunStatus.FAILED
            self._maybe_finish()
            return
        transition = sch.complete(self.plan, sched, name, outcome, self._key)
        if transition is not sch.NOTHING:
            self._emit_transition(transition)
            if self.scope.joins and transition.queued:
                self.scope.joined(self, transition.queued)  # cancel_rest (nbflow.termination)
        if outcome is _FAILED and (self.on_error == "stop" or self.plan.specs[name].critical):
            self._stop(RunStatus.FAILED)
            return
        if sched.ready:
            if dispatch:
                self._dispatch()
        elif not self._inflight:
            self._maybe_finish()
