"""The asyncio engine: runs one flow run on the current event loop.

The engine owns a :class:`~nbflow.scheduler.SchedulerState` and turns its decisions into
work for *runners*: asyncio tasks that each run nbflow tasks one after another. A runner whose
task ends takes the next placed task at once, so instant tasks cost no ``create_task`` and no
event-loop round trip; more runners start, doubling per loop turn, while placed tasks wait
because the running ones are waiting (I/O, sleeps, threads). Runners yield to the loop every
:data:`TIME_SLICE`, and every runner is awaited before a run returns, so none outlives it.
Each step is reported as an event: the engine folds it into the run's
:class:`~nbflow.state.RunState` first, then publishes it to subscribers (store, widgets, user
callbacks).

Flow of one task::

    ready (heap) --dispatch--> gates (when / branch) --> worker placed --> queued for a runner
      runner: attempts: middleware( executor.call(fn, inputs) ) within timeout, retried
      end --> scheduler.complete() --> downstream queued / skipped / upstream_failed

A failure stops the run when ``on_error="stop"`` or the task is ``critical``: nothing new
starts, running tasks are cancelled, and tasks that never started end ``cancelled``.
"""

from __future__ import annotations

import ast
import asyncio
import collections
import functools
import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

from . import events as ev
from . import scheduler as sch
from .collector import frozen_gc
from .errors import (
    ConditionError,
    OverheadWarning,
    RetryIfError,
    TaskTimeoutError,
    describe,
    format_exception,
)
from .events import EventBus
from .executors import LocalExecutor
from .fanout import sliding_window
from .graph import Gate, Plan
from .lifecycle import SUCCESSFUL, RunStatus, TaskState
from .middleware import Context, call_with, handlers_for
from .pool import Pool
from .retry import RetryState
from .state import HANDLERS as _APPLY
from .state import RunState

S = TaskState
# The outcomes every task reads, bound once: an enum class attribute costs ~45 ns.
_FAILED, _SUCCEEDED = S.FAILED, S.SUCCEEDED
log = logging.getLogger("nbflow.engine")


class GateContext:
    """What a callable ``when=`` receives: upstream ``results``, run ``vars``, the ``task``."""

    __slots__ = ("results", "task", "vars")

    def __init__(self, task: str, results: dict[str, Any], variables: dict[str, Any]) -> None:
        self.task, self.results, self.vars = task, results, variables

    def __getitem__(self, name: str) -> Any:
        return self.results[name]


class Engine:
    """Runs one run of a :class:`~nbflow.graph.Plan`; create one per run."""

    def __init__(
        self,
        plan: Plan,
        *,
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
    ) -> None:
        self.plan = plan
        self.run_id = run_id
        self.variables = variables
        self.strategy = strategy
        limit = getattr(strategy, "max_workers", None)
        self.max_workers = (
            min(x for x in (max_workers, limit) if x) if (max_workers or limit) else None
        )
        self.on_error = on_error
        self.bus = bus
        self.pool = pool
        self.executor: Any = executor or LocalExecutor(max_workers)
        self._owns_executor = executor is None
        self.run_mw = handlers_for(middleware or [], "run")
        self.task_mw = handlers_for(middleware or [], "task")
        self.wall_start = wall_start
        self.parent_run = parent_run
        self.hooks = hooks  # cache/resume lookups (see nbflow.store); None for none
        # The store's recorder: ``journal.put(event)`` gets every event before subscribers do
        # (one C-level queue append per event), ``journal.finish()`` runs after RunFinished is
        # recorded and before subscribers see it, so they see a run the store has checked
        # (its warnings given; any read of the store waits for its last commit).
        self.journal = journal
        # The journal's put per event class (``journal.routes`` may give some their own);
        # RunFinished's also finishes the journal. None of them refers to the engine: a
        # bound method here would make a reference cycle, and every engine (its plan and
        # state) would wait for the cyclic collector, which then frees it during a later run.
        self._record: dict[type, Callable[[Any], None]] | None = None
        if journal is not None:
            routes = getattr(journal, "routes", None) or {}
            self._record = {cls: routes.get(cls, journal.put) for cls in _APPLY}
            self._record[ev.RunFinished] = functools.partial(
                _record_end, self._record[ev.RunFinished], journal, run_id
            )
        self.state = RunState()
        self._subscribers = bus.subscribers
        self._seq = 0
        # Task name -> its runner (None: placed on a worker, waiting for a runner).
        self._inflight: dict[str, asyncio.Task[None] | None] = {}
        self._placed: collections.deque[tuple[str, str]] = collections.deque()
        self._runners: set[asyncio.Task[None]] = set()
        self._spawn_pending = False
        self._slots: list[str] = []  # free "slot-N" names (without a pool), reused LIFO
        self._next_slot = 0
        self._stopping = False
        self._final_status: RunStatus | None = None
        self._owners: dict[asyncio.Task[None], tuple[str, str]] = {}
        self._crash: BaseException | None = None
        self._sched: sch.SchedulerState | None = None
        self._done: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # Inputs that come from run variables, resolved once per run, not per task; listed
        # only for the tasks that have such parameters (few), so a run starts in O(those).
        self._var_params: dict[str, tuple[str, ...]] = {}
        self._wants_worker: set[str] = set()
        for n in plan.with_free_params():
            params = plan.free_params[n]
            self._var_params[n] = tuple(p.name for p in params if p.name in variables)
            if any(p.name == "worker" for p in params):
                self._wants_worker.add(n)
        self._gated = plan.table("gated", lambda: {n for n, g in plan.gates.items() if g})
        with_data = plan.table(
            "with_data", lambda: frozenset(n for n, p in plan.data_params.items() if p)
        )
        # Tasks of the short path (see _runner), and which of them are coroutine functions.
        self._simple = plan.table("simple", lambda: _simple_tasks(plan))
        # Tasks that receive anything at all (results, variables, their worker's name).
        self._takes_inputs = with_data.union(self._var_params, self._wants_worker)
        # A remote executor (nbflow.dask) returns handles to results that stay on the cluster;
        # results the kernel itself reads (gates, fan-out sources, the cache) are fetched.
        self._remote = bool(getattr(self.executor, "remote_results", False))
        self._fetch = _needs_local(plan) if self._remote else frozenset()
        # Tasks that need none of the attempt machinery (one attempt, no timeout, no fan-out)
        # take a short path when the run has no task middleware, cache/resume hooks or remote
        # executor: most tasks of most flows.
        self._short_path = not (self.task_mw or self._remote or hooks)
        self._inline_async = type(self.executor) is LocalExecutor

    # -- events ----------------------------------------------------------------------------

    def _emit(self, cls: type[ev.Event], *args: Any) -> None:
        seq, t = self._seq, self._clock() - self._t0
        event = cls(self.run_id, seq, t, *args)
        self._seq = seq + 1
        # RunState.apply, inline (three events per task): fold the event into the state.
        state = self.state
        state.last_seq, state.last_t = seq, t
        _APPLY[cls](state, event)
        if self._record is not None:
            self._record[cls](event)
        if self._subscribers:  # the bus's own list: subscribers may come and go mid-run
            self.bus.publish(event)

    def _emit_transition(self, transition: sch.Transition) -> None:
        for name in transition.queued:
            self._emit(ev.TaskQueued, name)
        for name, state, reason in transition.resolved:
            self._emit(ev.TaskSkipped, name, state.value, reason)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> RunState:
        """Execute the plan to the end (or until stopped/cancelled); return the final state."""
        with frozen_gc():  # before RunStarted: it allocates a record per task
            return await self._run()

    async def _run(self) -> RunState:
        self.loop = loop = asyncio.get_running_loop()
        # The loop's clock; time.monotonic itself when that is all loop.time() does, which
        # saves a Python call on each of the four readings per task.
        plain_clock = type(loop).time is asyncio.BaseEventLoop.time
        self._clock = time.monotonic if plain_clock else loop.time
        self._t0 = loop.time()
        self._key = self.strategy.prepare(self.plan)
        self._done = loop.create_future()
        plan = self.plan
        self._emit(
            ev.RunStarted,
            plan.flow_name,
            plan.flow_version,
            plan.names,
            dict(self.variables),
            self.wall_start if self.wall_start is not None else time.time(),
            plan.table("fan_outs", lambda: tuple(n for n in plan.names if plan.specs[n].fan_out)),
            self.parent_run,
        )
        try:
            await self._execute()
        except asyncio.CancelledError:
            self._finalize()
            raise
        finally:
            if self._owns_executor:
                self.executor.close()
        return self.state

    async def _execute(self) -> None:
        # Structured by hand rather than with asyncio.TaskGroup, which costs a second
        # done-callback per task: every child is cancelled and awaited before we return,
        # and a child that crashes (a BaseException) ends the run and is re-raised here.
        main = asyncio.ensure_future(self._main())
        assert self._done is not None
        try:
            await self._done
        except asyncio.CancelledError:
            self._stop(RunStatus.CANCELLED)
            await self._drain(main)
            raise
        await self._drain(main)
        if self._crash is not None:
            raise self._crash

    async def _drain(self, main: asyncio.Future[None]) -> None:
        pending = [main, *self._runners]
        while pending := [t for t in pending if not t.done()]:
            await asyncio.wait(pending)
        if self._runners:
            # Some runners' done callbacks (_child_done) wait in the loop's queue: let them
            # run now, so that a crash they find is raised by this run, and that the loop
            # does not keep this engine (its plan and state) alive into whatever runs next.
            await asyncio.sleep(0)

    async def _main(self) -> None:
        handlers = self.run_mw
        if not handlers:
            self._begin()
            return
        ctx = Context("run", self.run_id, self.plan.flow_name, self.variables)

        async def innermost() -> RunState:
            self._begin()
            await asyncio.shield(self._done)  # type: ignore[arg-type]
            return self.state

        try:
            await call_with(handlers, ctx, innermost)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a run middleware failed: fail the run cleanly
            self.state.error = f"middleware: {describe(error)}"
            self._stop(RunStatus.FAILED)

    def _begin(self) -> None:
        self._sched, transition = sch.initial(self.plan, self._key)
        self._emit_transition(transition)
        self._dispatch()
        self._maybe_finish()

    def cancel(self) -> None:
        """Stop the run: nothing new starts, running tasks are cancelled; status cancelled."""
        if self.loop is not None and not self._stopping:
            self._stop(RunStatus.CANCELLED)

    def _stop(self, status: RunStatus) -> None:
        if self._final_status is None or status is RunStatus.CANCELLED:
            self._final_status = status
        self._stopping = True
        for task in {t for t in self._inflight.values() if t is not None}:
            task.cancel()
        while self._placed:  # placed on a worker, not begun: cancelled as they are
            name, worker = self._placed.popleft()
            self._inflight.pop(name)
            self._release(worker)
            self._emit(ev.TaskCancelled, name, 0)
            sch.record(self.sched, name, S.CANCELLED)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self._inflight or (not self._stopping and (self._sched is None or self._sched.ready)):
            return
        self._finalize()

    def _finalize(self) -> None:
        if self.state.status not in (RunStatus.RUNNING, RunStatus.PENDING):
            return
        sched = self._sched
        if sched is not None:
            leftover = [name for _, name in sched.queued()] + sch.undecided(self.plan, sched)
            sched.ready.clear()
            sched.ready_heap.clear()
        else:  # stopped before the first task was queued (a run middleware failed)
            leftover = list(self.plan.names)
        for name in leftover:
            if self.state.tasks[name].state not in (S.SKIPPED, S.UPSTREAM_FAILED):
                self._emit(ev.TaskCancelled, name)
        status = self._final_status
        if status is None:
            failed = any(r.state is S.FAILED for r in self.state.tasks.values())
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

    # -- dispatch --------------------------------------------------------------------------

    @property
    def sched(self) -> sch.SchedulerState:
        """The scheduler state (exists once the run has begun)."""
        assert self._sched is not None, "the run has not begun"
        return self._sched

    def _dispatch(self) -> None:
        """Place ready tasks while there is room (``max_workers``, the pool): open their gates,
        give each a worker, and queue them for runners (``_placed``), best first.

        A runner whose task ends takes the next placed task at once, without an event-loop
        round trip; :meth:`_spawn` starts more runners on the loop's next turn for what is
        still queued then (tasks that wait: I/O, sleeps, threads). So a stretch of instant
        tasks is run by one runner in turn, and tasks that wait all start within a few turns.
        Placing is as before runners existed: all ready tasks at once, so a pool policy or a
        task reading ``pool.in_flight`` sees every task placed in that step.
        """
        sched, limit, pool = self.sched, self.max_workers, self.pool
        ready, inflight, gated, placed = sched.ready, self._inflight, self._gated, self._placed
        unplaced: list[tuple[Any, str]] = []
        while ready and not self._stopping:
            if limit is not None and len(inflight) >= limit:
                break
            item = sch.take(sched)  # sch.pop_ready, keeping the item for push_back
            name = item[1]
            sched.running.add(name)
            if gated and name in gated and not self._gates_open(name):
                continue
            if pool is not None:
                worker = pool.acquire(name, self.plan.specs[name].worker)
                if worker is None:
                    unplaced.append(item)
                    if not pool.candidates():
                        break
                    continue
            else:
                worker = self._take_slot()
            inflight[name] = None  # placed: a runner takes it
            placed.append((name, worker))
        if unplaced:
            sch.push_back(sched, unplaced)
        self._spawn_later()

    def _spawn(self) -> None:
        """Start runners for placed tasks no runner took: one per task, but at most as many
        new runners as exist already (at least one), then come back on the next turn.

        The count doubles per turn rather than one per task at once: tasks that wait still all
        start within a few turns (log2 of their number), and a burst of instant tasks is not
        spread over runners it does not need.
        """
        self._spawn_pending = False
        placed = self._placed
        for _ in range(min(len(placed), max(1, len(self._runners)))):
            name, worker = placed.popleft()
            task = self.loop.create_task(self._runner(name, worker))  # type: ignore[union-attr]
            task.add_done_callback(self._child_done)
            self._runners.add(task)
            self._owners[task] = (name, worker)
            self._inflight[name] = task
        self._spawn_later()

    def _spawn_later(self) -> None:
        """Have :meth:`_spawn` run on the loop's next turn if placed tasks wait (once)."""
        if self._placed and not self._spawn_pending and not self._stopping:
            self._spawn_pending = True
            self.loop.call_soon(self._spawn)  # type: ignore[union-attr]

    async def _runner(self, name: str, worker: str) -> None:
        """Run ``name``, then the next placed task, and so on until none is left.

        One asyncio task runs many nbflow tasks in turn, so a task that completes without
        waiting costs no ``create_task`` and no event-loop round trip: the largest part of a
        plain asyncio DAG's per-task cost. It still yields to the loop every
        :data:`TIME_SLICE` seconds, so a long stretch of instant tasks never starves it.
        """
        me = asyncio.current_task()
        assert me is not None
        clock, emit, inflight = self._clock, self._emit, self._inflight
        specs, funcs, executor = self.plan.specs, self.plan.funcs, self.executor
        inline, short_path = self._inline_async, self._short_path
        pool, slots, placed = self.pool, self._slots, self._placed
        takes_inputs = self._takes_inputs
        simple = self._simple if short_path else {}
        yield_at = clock() + TIME_SLICE
        while True:
            is_async = simple.get(name)
            if is_async is None:
                outcome = await self._run_task(name, worker)
            else:  # the short path of _run_task, inline: most tasks of most flows take it
                outcome = _FAILED
                try:
                    kwargs = self._inputs(name, worker) if name in takes_inputs else {}
                    emit(ev.TaskStarted, name, 1, worker)
                    if is_async and inline:  # what LocalExecutor.call does, minus a frame
                        result = await funcs[name](**kwargs)
                    else:
                        result = await executor.call(
                            name,
                            funcs[name],
                            kwargs,
                            is_async=is_async,
                            priority=specs[name].priority,
                        )
                except asyncio.CancelledError:
                    emit(ev.TaskCancelled, name, self.state.tasks[name].attempts)
                    outcome = S.CANCELLED
                except Exception as error:
                    emit(ev.TaskFailed, name, 1, error, _format(error))
                else:
                    emit(ev.TaskSucceeded, name, 1, result)
                    outcome = _SUCCEEDED
                finally:
                    inflight.pop(name, None)
                    if pool is None:
                        slots.append(worker)  # _release, inline
                    else:
                        pool.release(worker)
            self._after_task(name, outcome)
            if not placed or self._stopping:
                return
            # Take the next placed task before yielding, so that _spawn, which runs during
            # the yield, leaves it to this runner. (Cancelled while yielding: _child_done.)
            name, worker = placed.popleft()
            inflight[name] = me
            self._owners[me] = (name, worker)
            if clock() >= yield_at:
                await asyncio.sleep(0)
                yield_at = clock() + TIME_SLICE

    def _child_done(self, task: asyncio.Task[None]) -> None:
        self._runners.discard(task)
        name, worker = self._owners.pop(task)
        if not task.cancelled() and task.exception() is not None:
            # Only a BaseException (KeyboardInterrupt, SystemExit) escapes _run_task.
            self._crash = self._crash or task.exception()
            self._final_status = RunStatus.FAILED
        if self._inflight.get(name) is task:
            # Cancelled before its task began (or between two tasks), or crashed:
            # _run_task did no bookkeeping, so do it here.
            self._inflight.pop(name)
            self._release(worker)
            self._emit(ev.TaskCancelled, name, 0)
            self._after_task(name, S.CANCELLED)
        if self._crash is not None and not self._stopping:
            self._stop(RunStatus.FAILED)

    def _take_slot(self) -> str:
        if self._slots:
            return self._slots.pop()
        self._next_slot += 1
        return f"slot-{self._next_slot - 1}"

    def _release(self, worker: str) -> None:
        if self.pool is not None:
            self.pool.release(worker)
        else:
            self._slots.append(worker)

    def _gates_open(self, name: str) -> bool:
        """Evaluate ``when``/branch gates; a closed gate skips the task, an error fails it."""
        gates = self.plan.gates[name]
        if not gates:
            return True
        tasks = self.state.tasks
        results = {
            d: tasks[d].result for d in self.plan.upstream[name] if tasks[d].state in SUCCESSFUL
        }
        for gate in gates:
            try:
                passed = _evaluate(gate, name, results, self.variables)
            except Exception as error:
                self._finish_task(name, S.FAILED, error=error)
                return False
            if not passed:
                reason = f"branch {gate.branch!r}" if gate.branch else "condition is false"
                self._finish_task(name, S.SKIPPED, reason=reason)
                return False
        return True

    # -- one task --------------------------------------------------------------------------

    def _inputs(self, name: str, worker: str) -> dict[str, Any]:
        tasks = self.state.tasks
        kwargs: dict[str, Any] = {}
        for param, dep in self.plan.data_params[name]:
            record = tasks[dep]
            kwargs[param] = record.result if record.state in SUCCESSFUL else None
        variables = self.variables
        for param in self._var_params.get(name, ()):
            kwargs[param] = variables[param]
        if name in self._wants_worker and "worker" not in kwargs:
            kwargs["worker"] = worker
        return kwargs

    async def _run_task(self, name: str, worker: str) -> S:
        """Run one task to its end; emit its events; return its outcome."""
        spec = self.plan.specs[name]
        outcome = S.FAILED
        try:
            kwargs = self._inputs(name, worker)
            hooks = self.hooks
            cached = await hooks.lookup(self, name, kwargs) if hooks is not None else None
            if cached is not None:
                self._emit(ev.TaskSucceeded, name, 0, cached[0], None, True)
                outcome = S.CACHED
            elif spec.fan_out:
                outcome = await self._run_fan_out(name, kwargs, worker)
            else:
                ok, _ = await self._attempts(name, kwargs, worker, None)
                outcome = S.SUCCEEDED if ok else S.FAILED
        except asyncio.CancelledError:
            record = self.state.tasks[name]
            self._emit(ev.TaskCancelled, name, record.attempts)
            outcome = S.CANCELLED
        except Exception as error:  # an engine-side failure (bad fan-out input, hook error)
            self._emit(ev.TaskFailed, name, self.state.tasks[name].attempts, error, _format(error))
            outcome = S.FAILED
        finally:
            self._inflight.pop(name, None)
            self._release(worker)
        return outcome

    async def _attempts(
        self, name: str, kwargs: dict[str, Any], worker: str, element: int | None
    ) -> tuple[bool, Any]:
        """Run attempts until success or the retry policy gives up: (ok, result or error)."""
        policy = self.plan.specs[name].retry
        loop = self.loop
        assert loop is not None
        retry_state = RetryState(policy, loop.time(), name) if policy is not None else None
        yield_at = self._clock() + TIME_SLICE
        attempt = 0
        while True:
            attempt += 1
            self._emit(ev.TaskStarted, name, attempt, worker, element)
            where = _NOWHERE  # a remote executor's (worker, run-clock start) of the attempt
            try:
                result = await self._call(name, kwargs, attempt, worker, element)
                if self._remote:
                    where = self._placement(result)
                    if element is None and name in self._fetch:
                        result = await self.executor.amaterialize(result)
            except asyncio.CancelledError:
                if element is not None:
                    self._emit(ev.TaskCancelled, name, attempt, element)
                raise
            except Exception as error:
                if self._remote and where is _NOWHERE:
                    where = self._placement(error)
                delay = None
                if retry_state is not None:
                    retry_state.attempt = attempt
                    try:
                        delay = retry_state.next_delay(error, loop.time())
                    except RetryIfError as failure:  # it holds the task's own error
                        error = failure
                if delay is None:
                    self._emit(ev.TaskFailed, name, attempt, error, _format(error), element, *where)
                    return False, error
                self._emit(ev.TaskRetrying, name, attempt, error, delay, element, *where)
                # No delay: retry at once, like a loop would; still let the event loop run
                # once per TIME_SLICE, should an instant task fail many times over.
                if delay or self._clock() >= yield_at:
                    await asyncio.sleep(delay)
                    yield_at = self._clock() + TIME_SLICE
                continue
            self._emit(ev.TaskSucceeded, name, attempt, result, element, False, *where)
            return True, result

    def _placement(self, outcome: Any) -> tuple[str | None, float | None]:
        """Where and when (run clock) a remote executor ran the attempt behind ``outcome``."""
        found = self.executor.placement(outcome)
        if found is None:
            return _NOWHERE
        worker, began = found
        return worker, (None if began is None else began - self.state.wall_start)

    async def _call(
        self, name: str, kwargs: dict[str, Any], attempt: int, worker: str, element: int | None
    ) -> Any:
        spec = self.plan.specs[name]
        fn = self.plan.funcs[name]
        executor = self.executor
        if self.task_mw:
            ctx = Context(
                "task",
                self.run_id,
                self.plan.flow_name,
                self.variables,
                name,
                attempt,
                element,
                worker,
                dict(kwargs),
                spec,
                fn,
            )

            async def innermost() -> Any:
                return await executor.call(
                    name, fn, ctx.inputs, is_async=spec.is_async, priority=spec.priority
                )

            call = call_with(self.task_mw, ctx, innermost)
        elif spec.is_async and self._inline_async:
            call = fn(**kwargs)  # what LocalExecutor.call does, minus a frame
        else:
            call = executor.call(name, fn, kwargs, is_async=spec.is_async, priority=spec.priority)
        if spec.timeout is None:
            return await call
        try:
            async with asyncio.timeout(spec.timeout) as scope:
                return await call
        except TimeoutError:
            if scope.expired():
                raise TaskTimeoutError(name, spec.timeout) from None
            raise

    async def _run_fan_out(self, name: str, kwargs: dict[str, Any], worker: str) -> S:
        spec = self.plan.specs[name]
        param = spec.fan_out
        assert param is not None
        source = kwargs.get(param)
        try:
            items = list(source)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                f"task {name!r} fan_out={param!r}: upstream result "
                f"{type(source).__name__} is not iterable"
            ) from None
        self._emit(ev.TaskStarted, name, 1, worker, None, len(items))

        async def run_one(index: int, item: Any) -> Any:
            ok, value = await self._attempts(name, {**kwargs, param: item}, worker, index)
            if not ok:
                raise value
            return value

        outcomes = await sliding_window(
            items, run_one, concurrency=spec.concurrency, rate=spec.rate
        )
        failures = [o for o in outcomes if not o.ok]
        if failures and not spec.allow_partial:
            first = failures[0].error
            error = RuntimeError(
                f"task {name!r}: {len(failures)} of {len(items)} fan-out elements failed; "
                f"first (element {failures[0].index}): {describe(first)}"
            )
            error.__cause__ = first
            self._emit(ev.TaskFailed, name, 1, error, _format(first) if first else "")
            return S.FAILED
        results = [o.value for o in outcomes if o.ok]
        if name in self._fetch:  # a remote executor's element results, fetched in one go
            results = await self.executor.amaterialize(results)
        self._emit(ev.TaskSucceeded, name, 1, results)
        return S.SUCCEEDED

    # -- after a task ----------------------------------------------------------------------

    def _finish_task(
        self, name: str, outcome: S, *, error: BaseException | None = None, reason: str = ""
    ) -> None:
        """End a task that never started (gate closed or failed)."""
        self.sched.running.discard(name)
        if outcome is S.SKIPPED:
            self._emit(ev.TaskSkipped, name, outcome.value, reason)
        else:
            self._emit(ev.TaskFailed, name, 0, error, _format(error) if error else "")
        self._after_task(name, outcome, dispatch=False)

    def _after_task(self, name: str, outcome: S, *, dispatch: bool = True) -> None:
        """Decide the dependants of a finished task and place what became ready."""
        sched = self._sched
        assert sched is not None
        if self._stopping:
            # Dependants of work cut short by a stop end `cancelled` (in _finalize), not
            # `upstream_failed`: nothing upstream of them failed on its own.
            sch.record(sched, name, outcome)
            self._maybe_finish()
            return
        transition = sch.complete(self.plan, sched, name, outcome, self._key)
        if transition is not sch.NOTHING:
            self._emit_transition(transition)
        if outcome is _FAILED and (self.on_error == "stop" or self.plan.specs[name].critical):
            self._stop(RunStatus.FAILED)
            return
        if dispatch and sched.ready:
            self._dispatch()
        if not self._inflight and not sched.ready:  # _maybe_finish, inline
            self._finalize()


_NOWHERE: tuple[str | None, float | None] = (None, None)


def _simple_tasks(plan: Plan) -> dict[str, bool]:
    """Task -> whether it is a coroutine function, for the tasks that need none of the
    attempt machinery: one attempt, no timeout, no fan-out (the runner's short path)."""
    return {
        name: spec.is_async
        for name, spec in plan.specs.items()
        if spec.retry is None and spec.timeout is None and not spec.fan_out
    }


#: A runner going from one instant task to the next yields to the event loop this often
#: (seconds), so widgets, timers and other coroutines keep running during a long burst.
TIME_SLICE = 0.005


def _needs_local(plan: Plan) -> frozenset[str]:
    """Tasks whose results the kernel reads itself, so a remote executor must fetch them.

    A condition string reads the tasks it names (all upstream ones if it uses ``results`` as a
    whole), a callable gate may read any upstream result; a fan-out enumerates its source; the
    cache stores a cached task's result and keys it on its inputs.
    """
    names: set[str] = set()
    for name in plan.names:
        spec = plan.specs[name]
        for gate in plan.gates[name]:
            condition = gate.condition
            if condition is None or _reads_all_results(condition.tree):
                names.update(plan.upstream[name])
            else:
                names.update(condition.referenced_tasks(plan.upstream[name]))
        if spec.fan_out:
            names.update(dep for param, dep in plan.data_params[name] if param == spec.fan_out)
        if spec.cache:
            names.add(name)
            names.update(dep for _, dep in plan.data_params[name])
    return frozenset(names)


def _reads_all_results(tree: ast.AST) -> bool:
    """Whether a condition uses ``results`` other than as ``results['<constant>']``."""
    keyed = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
    }
    return any(
        isinstance(node, ast.Name) and node.id == "results" and id(node) not in keyed
        for node in ast.walk(tree)
    )


#: Below this median attempt duration, nbflow's ~8-20 µs per task is a large share of a run.
SHORT_TASK_S = 50e-6
#: ...and only for runs this big, where the overhead adds up to something a person notices.
MANY_TASKS = 1000


def warn_if_overhead_dominates(state: RunState) -> None:
    """Warn (``OverheadWarning``) when a big run's tasks were shorter than nbflow's overhead."""
    rows = state.rows
    if len(rows) < MANY_TASKS:
        return
    # The median of an even sample of about 1,000 rows: close enough, and O(1) per run.
    sample = rows[:: len(rows) // MANY_TASKS]
    durations = sorted(r.end - r.start for r in sample if r.end is not None)
    if durations and durations[len(durations) // 2] < SHORT_TASK_S:
        warnings.warn(
            f"flow {state.flow!r}: {len(rows)} attempts with a median of "
            f"{durations[len(durations) // 2] * 1e6:.0f} µs each; nbflow's own cost (~10 µs a "
            "task) dominates. Batch small work into fewer, bigger tasks (e.g. fan_out over "
            "chunks); see docs/performance.md",
            OverheadWarning,
            stacklevel=2,
        )


def _record_end(put: Callable[[Any], None], journal: Any, run_id: str, event: ev.Event) -> None:
    """Record ``event`` (RunFinished), then finish the journal: wait until the store has
    checked the run. The run is over and its state complete, so a failure is reported, not
    raised."""
    put(event)
    try:
        journal.finish()
    except Exception:
        log.exception("nbflow: could not finish recording run %s", run_id)


def _evaluate(gate: Gate, name: str, results: dict[str, Any], variables: dict[str, Any]) -> bool:
    if gate.condition is not None:
        passed = gate.condition.evaluate(results, variables)
    else:
        assert gate.callable is not None
        try:
            passed = bool(gate.callable(GateContext(name, results, variables)))
        except Exception as error:
            raise ConditionError(name, repr(gate.callable), describe(error)) from error
    return not passed if gate.negate else passed


def _format(error: BaseException | None) -> str:
    return format_exception(error)
